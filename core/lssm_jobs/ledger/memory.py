"""An in-process job ledger, for development and tests (not durable, not shared between processes).

Its state lives in a :class:`MemoryLedgerStore`: ledgers made on one store (``MemoryLedger(store=...)``, or
the same ``namespace``) share it, the way several backend instances share one database. A lock makes each
operation atomic, also across threads (a WSGI adapter runs its own event loop in a thread).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from lssm_jobs.backends.base import DeadLetter, JobRecord, OutgoingJob, PushResult
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.jobs import JobStatus
from lssm_jobs.ledger.base import FIRST_GENERATION, Claim, ClaimOutcome, JobLedger

_WAITING = (JobStatus.SCHEDULED, JobStatus.PENDING)


@attrs.define(kw_only=True)
class _Entry:
    job: OutgoingJob
    status: JobStatus
    run_at: float
    updated_at: float
    attempts: int = 0
    last_error: str | None = None
    generation: int = FIRST_GENERATION
    issued: int = FIRST_GENERATION
    token: str | None = None
    lease_until: float = 0.0
    finished_at: float = 0.0
    reason: str = ""
    traceback: str | None = None


class MemoryLedgerStore:
    """The shared state of memory ledgers: records by id and live dedupe keys."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, _Entry] = {}
        self.dedupe: dict[str, str] = {}


class MemoryLedger(JobLedger):
    """Job records and dead letters in this process's memory.

    :param store: the state to use (shared with other ledgers on it); a new one by default.
    :param namespace: instead of ``store``, the name of a process-wide store (ledgers opened with the same
        name share it).
    :param completed_retention: seconds completed jobs stay readable with ``get`` (default 3600).
    """

    name = "memory"
    _named: ClassVar[dict[str, MemoryLedgerStore]] = {}

    def __init__(
        self,
        *,
        store: MemoryLedgerStore | None = None,
        namespace: str | None = None,
        completed_retention: float = 3600.0,
    ) -> None:
        if store is not None and namespace is not None:
            raise ValueError("pass store= or namespace=, not both")
        if completed_retention < 0:
            raise ValueError(f"completed_retention must be >= 0, got {completed_retention!r}")
        if namespace is not None:
            store = self._named.setdefault(namespace, MemoryLedgerStore())
        self.store = store or MemoryLedgerStore()
        self.completed_retention = float(completed_retention)

    @classmethod
    def from_options(cls, **options: Any) -> MemoryLedger:
        return cls(**options)

    # -- helpers (called with the lock held) ------------------------------------------------------------------

    def _visible(self, entry: _Entry | None, now: float) -> _Entry | None:
        if entry is None:
            return None
        if entry.status is JobStatus.COMPLETED and entry.finished_at <= now - self.completed_retention:
            self._forget(entry)
            return None
        return entry

    def _forget(self, entry: _Entry) -> None:
        self.store.entries.pop(entry.job.id, None)
        self._free_key(entry)

    def _free_key(self, entry: _Entry) -> None:
        key = entry.job.dedupe_key
        if key is not None and self.store.dedupe.get(key) == entry.job.id:
            del self.store.dedupe[key]

    def _held(self, job_id: str, token: str) -> _Entry | None:
        entry = self.store.entries.get(job_id)
        if entry is None or entry.status is not JobStatus.ACTIVE or entry.token != token:
            return None
        return entry

    @staticmethod
    def _status(entry: _Entry, now: float) -> JobStatus:
        if entry.status in _WAITING:
            return JobStatus.SCHEDULED if entry.run_at > now else JobStatus.PENDING
        return entry.status

    # -- producing --------------------------------------------------------------------------------------------

    async def record(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        results = []
        now = time.time()
        with self.store.lock:
            for job in jobs:
                if self._visible(self.store.entries.get(job.id), now) is not None:
                    results.append(PushResult(id=job.id, created=False))
                    continue
                if job.dedupe_key is not None:
                    holder = self.store.dedupe.get(job.dedupe_key)
                    if holder is not None:
                        results.append(PushResult(id=holder, created=False))
                        continue
                    self.store.dedupe[job.dedupe_key] = job.id
                self.store.entries[job.id] = _Entry(
                    job=job,
                    status=JobStatus.SCHEDULED if job.run_at > now else JobStatus.PENDING,
                    run_at=job.run_at,
                    updated_at=now,
                )
                results.append(PushResult(id=job.id, created=True))
        return results

    async def discard(self, job_ids: Sequence[str]) -> int:
        discarded = 0
        with self.store.lock:
            for job_id in job_ids:
                entry = self.store.entries.get(job_id)
                if (
                    entry is not None
                    and entry.status in _WAITING
                    and entry.attempts == 0
                    and entry.generation == FIRST_GENERATION
                ):
                    self._forget(entry)
                    discarded += 1
        return discarded

    # -- delivering --------------------------------------------------------------------------------------------

    async def begin(self, job_id: str, *, generation: int, lease_ms: int, tolerance: float = 1.0) -> Claim:
        now = time.time()
        with self.store.lock:
            entry = self._visible(self.store.entries.get(job_id), now)
            if entry is None:
                return Claim(outcome=ClaimOutcome.UNKNOWN, job_id=job_id)
            common: dict[str, Any] = {
                "job_id": job_id,
                "generation": entry.generation,
                "run_at": entry.run_at,
                "queue": entry.job.queue,
            }
            if generation > entry.generation:
                return Claim(outcome=ClaimOutcome.EARLY, **common)
            if entry.status in (JobStatus.COMPLETED, JobStatus.DEAD):
                return Claim(outcome=ClaimOutcome.FINISHED, **common)
            if generation < entry.generation:
                return Claim(outcome=ClaimOutcome.SUPERSEDED, **common)
            if entry.status is JobStatus.ACTIVE and entry.lease_until > now:
                return Claim(outcome=ClaimOutcome.BUSY, **common)
            if entry.status is JobStatus.SCHEDULED and entry.run_at > now + tolerance:
                return Claim(outcome=ClaimOutcome.NOT_DUE, **common)
            entry.status = JobStatus.ACTIVE
            entry.attempts += 1
            entry.token = secrets.token_hex(16)
            entry.lease_until = now + lease_ms / 1000
            entry.issued += 1
            entry.updated_at = now
            return Claim(
                outcome=ClaimOutcome.RUN,
                attempt=entry.attempts,
                token=entry.token,
                next_generation=entry.issued,
                body=entry.job.body,
                **common,
            )

    async def extend(self, job_id: str, token: str, *, lease_ms: int) -> bool:
        with self.store.lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            entry.lease_until = time.time() + lease_ms / 1000
            return True

    async def complete(self, job_id: str, token: str) -> bool:
        now = time.time()
        with self.store.lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            entry.status, entry.token, entry.finished_at, entry.updated_at = (
                JobStatus.COMPLETED,
                None,
                now,
                now,
            )
            self._free_key(entry)
            if self.completed_retention <= 0:
                self._forget(entry)
            return True

    async def reschedule(
        self, job_id: str, token: str, *, run_at: float, error: str, generation: int | None
    ) -> bool:
        now = time.time()
        with self.store.lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            entry.status = JobStatus.SCHEDULED if run_at > now else JobStatus.PENDING
            entry.run_at, entry.last_error, entry.token, entry.updated_at = run_at, error, None, now
            if generation is not None:
                entry.generation = generation
                entry.issued = max(entry.issued, generation)
            return True

    async def release(self, job_id: str, token: str) -> bool:
        with self.store.lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            entry.status, entry.token, entry.updated_at = JobStatus.PENDING, None, time.time()
            entry.attempts = max(entry.attempts - 1, 0)
            return True

    async def dead_letter(
        self, job_id: str, token: str, *, reason: str, error: str | None, traceback: str | None
    ) -> bool:
        now = time.time()
        with self.store.lock:
            entry = self._held(job_id, token)
            if entry is None:
                return False
            entry.status, entry.token, entry.finished_at, entry.updated_at = JobStatus.DEAD, None, now, now
            entry.reason, entry.last_error, entry.traceback = reason, error, traceback
            self._free_key(entry)
            return True

    # -- inspecting --------------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        now = time.time()
        with self.store.lock:
            entry = self._visible(self.store.entries.get(job_id), now)
            if entry is None:
                return None
            return JobRecord(
                id=job_id,
                type=entry.job.type,
                queue=entry.job.queue,
                status=self._status(entry, now),
                attempts=entry.attempts,
                priority=entry.job.priority,
                run_at=entry.run_at,
                created_at=entry.job.created_at,
                updated_at=entry.updated_at,
                dedupe_key=entry.job.dedupe_key,
                last_error=entry.last_error,
                body=entry.job.body,
            )

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        now = time.time()
        counts: dict[str, dict[JobStatus, int]] = {}
        with self.store.lock:
            for entry in list(self.store.entries.values()):
                if self._visible(entry, now) is None:
                    continue
                per_queue = counts.setdefault(entry.job.queue, {})
                status = self._status(entry, now)
                per_queue[status] = per_queue.get(status, 0) + 1
        return counts

    @staticmethod
    def _letter(entry: _Entry) -> DeadLetter:
        return DeadLetter(
            id=entry.job.id,
            type=entry.job.type,
            queue=entry.job.queue,
            reason=entry.reason,
            error=entry.last_error,
            traceback=entry.traceback,
            attempts=entry.attempts,
            failed_at=entry.finished_at,
            body=entry.job.body,
        )

    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        with self.store.lock:
            dead = [entry for entry in self.store.entries.values() if entry.status is JobStatus.DEAD]
        dead.sort(key=lambda entry: (entry.finished_at, entry.job.id), reverse=True)
        return [self._letter(entry) for entry in dead[max(offset, 0) : max(offset, 0) + max(limit, 0)]]

    async def get_dead(self, job_id: str) -> DeadLetter | None:
        with self.store.lock:
            entry = self.store.entries.get(job_id)
            return self._letter(entry) if entry is not None and entry.status is JobStatus.DEAD else None

    # -- dead letters --------------------------------------------------------------------------------------------

    async def reserve_generation(self, job_id: str) -> int | None:
        with self.store.lock:
            entry = self._visible(self.store.entries.get(job_id), time.time())
            if entry is None:
                return None
            entry.issued += 1
            return entry.issued

    async def replay_dead(self, job_id: str, *, run_at: float, generation: int) -> bool:
        now = time.time()
        with self.store.lock:
            entry = self.store.entries.get(job_id)
            if entry is None or entry.status is not JobStatus.DEAD:
                return False
            key = entry.job.dedupe_key
            if key is not None:
                holder = self.store.dedupe.get(key)
                if holder is not None and holder != job_id:
                    raise DedupeConflictError(job_id, key, holder)
                self.store.dedupe[key] = job_id
            entry.status = JobStatus.SCHEDULED if run_at > now else JobStatus.PENDING
            entry.run_at, entry.attempts, entry.updated_at = run_at, 0, now
            entry.generation, entry.issued = generation, max(entry.issued, generation)
            entry.reason, entry.traceback, entry.finished_at = "", None, 0.0
            return True

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        with self.store.lock:
            targets = list(self.store.entries) if job_ids is None else list(job_ids)
            purged = 0
            for job_id in targets:
                entry = self.store.entries.get(job_id)
                if entry is not None and entry.status is JobStatus.DEAD:
                    self._forget(entry)
                    purged += 1
            return purged
