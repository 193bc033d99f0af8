"""The in-memory backend: complete (delays, priorities, dedupe, leases, dead letters) but not durable.

For development, tests, and single-process apps that can afford to lose queued jobs on exit. Several
``MemoryBackend`` instances can share one :class:`MemoryStore` (one process), which is how the conformance
suite simulates several workers.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from lssm_jobs.backends.base import (
    BackendCapabilities,
    CancelOutcome,
    DeadLetter,
    Delivery,
    JobRecord,
    OutgoingJob,
    PullBackend,
    PushResult,
    WorkerInfo,
    WorkerRegistry,
)
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.jobs import LIVE_STATUSES, JobStatus


@attrs.define(kw_only=True)
class _StoredJob:
    id: str
    type: str
    queue: str
    status: JobStatus
    priority: int
    run_at: float
    created_at: float
    updated_at: float
    dedupe_key: str | None
    body: bytes
    attempts: int = 0
    last_error: str | None = None
    lease_until: float = 0.0
    lease_token: int = 0
    # dead-letter details
    reason: str | None = None
    traceback: str | None = None
    failed_at: float = 0.0
    completed_at: float = 0.0
    cancel_requested: bool = False
    progress: str | None = None


class MemoryStore:
    """The state shared by the memory backends of one process.

    :param completed_retention: seconds completed jobs stay readable with ``get`` (0: deleted at once).
    :param completed_max: most completed jobs kept (0: no count limit). ``completed_limit`` is its old,
        deprecated name.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        completed_retention: float = 3600.0,
        completed_max: int = 10_000,
        completed_limit: int | None = None,
    ) -> None:
        if completed_limit is not None:
            warnings.warn(
                "MemoryStore(completed_limit=...) is deprecated: use completed_max, as on every backend",
                DeprecationWarning,
                stacklevel=2,
            )
            completed_max = completed_limit
        self.clock = clock
        self.completed_retention = completed_retention
        self.completed_max = completed_max
        self.jobs: dict[str, _StoredJob] = {}
        self.dedupe: dict[str, str] = {}
        self.ready: dict[str, list[tuple[int, float, int, str]]] = {}  # queue -> heap(-priority, run_at, seq)
        self.scheduled: list[tuple[float, int, str]] = []  # heap(run_at, seq, id)
        self.active: set[str] = set()
        self.completed: list[tuple[float, str]] = []  # (completed_at, id), oldest first
        self.seq = itertools.count()
        self.tokens = itertools.count(1)
        self.waiters: set[asyncio.Event] = set()
        self.workers: dict[str, tuple[WorkerInfo, float]] = {}  # id -> (record, live until)

    # -- state transitions (all synchronous: the event loop makes each one atomic) --------------------------

    def make_ready(self, job: _StoredJob) -> None:
        job.status = JobStatus.PENDING
        heapq.heappush(
            self.ready.setdefault(job.queue, []), (-job.priority, job.run_at, next(self.seq), job.id)
        )

    def schedule(self, job: _StoredJob) -> None:
        if job.run_at <= self.clock():
            self.make_ready(job)
        else:
            job.status = JobStatus.SCHEDULED
            heapq.heappush(self.scheduled, (job.run_at, next(self.seq), job.id))
        self.notify()

    def notify(self) -> None:
        for waiter in self.waiters:
            waiter.set()

    def promote_and_reclaim(self, now: float) -> None:
        while self.scheduled and self.scheduled[0][0] <= now:
            _, _, job_id = heapq.heappop(self.scheduled)
            job = self.jobs.get(job_id)
            if job is not None and job.status is JobStatus.SCHEDULED and job.run_at <= now:
                self.make_ready(job)
        for job_id in [job_id for job_id in self.active if self.jobs[job_id].lease_until <= now]:
            job = self.jobs[job_id]
            self.active.discard(job_id)
            job.lease_token = 0
            if job.cancel_requested:  # its worker died before stopping it: cancelled, not run again
                self.finish_cancelled(job)
                continue
            self.make_ready(job)  # the worker died or lost its lease: deliver again

    def next_wakeup(self) -> float | None:
        times = [self.jobs[job_id].lease_until for job_id in self.active]
        if self.scheduled:
            times.append(self.scheduled[0][0])
        return min(times) if times else None

    def pop_ready(self, queues: Sequence[str] | None) -> _StoredJob | None:
        names = list(self.ready) if queues is None else [name for name in queues if name in self.ready]
        while True:
            best: tuple[int, float, int, str] | None = None
            best_queue = ""
            for name in names:
                heap = self.ready[name]
                if heap and (best is None or heap[0] < best):
                    best, best_queue = heap[0], name
            if best is None:
                return None
            heapq.heappop(self.ready[best_queue])
            job = self.jobs.get(best[3])
            if job is not None and job.status is JobStatus.PENDING:
                return job  # else a stale heap entry (the job moved on); skip it

    def finish_cancelled(self, job: _StoredJob) -> None:
        """Make ``job`` (not active, or just taken off its lease) ``cancelled``: kept like completed jobs."""
        now = self.clock()
        job.status = JobStatus.CANCELLED
        job.cancel_requested = False
        job.completed_at = job.updated_at = now
        self.release_dedupe(job)  # its heap entries go stale and are skipped
        self.completed.append((now, job.id))
        self.prune_completed(now)

    def release_dedupe(self, job: _StoredJob) -> None:
        if job.dedupe_key is not None and self.dedupe.get(job.dedupe_key) == job.id:
            del self.dedupe[job.dedupe_key]

    def prune_completed(self, now: float) -> None:
        while self.completed and (
            self.completed[0][0] <= now - self.completed_retention
            or 0 < self.completed_max < len(self.completed)
        ):
            _, job_id = self.completed.pop(0)
            job = self.jobs.get(job_id)
            if job is not None and job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED):
                del self.jobs[job_id]


class _MemoryDelivery(Delivery):
    def __init__(self, store: MemoryStore, job: _StoredJob, lease_ms: int) -> None:
        self.store = store
        self.job = job
        self.token = job.lease_token
        self.id = job.id
        self.attempt = job.attempts
        self.body = job.body
        self.queue = job.queue
        self.lease_ms = lease_ms

    def _held(self) -> bool:
        return self.job.status is JobStatus.ACTIVE and self.job.lease_token == self.token

    def _finish(self) -> bool:
        if not self._held():
            return False
        self.store.active.discard(self.job.id)
        self.job.lease_token = 0
        self.job.updated_at = self.store.clock()
        return True

    async def ack(self) -> None:
        if self._finish():
            now = self.store.clock()
            self.job.status = JobStatus.COMPLETED
            self.job.completed_at = now
            self.store.release_dedupe(self.job)
            self.store.completed.append((now, self.job.id))
            self.store.prune_completed(now)

    async def retry(self, *, run_at: float, error: str) -> None:
        if self._finish():
            if self.job.cancel_requested:  # a cancel request waits: the job ends here
                self.store.finish_cancelled(self.job)
                return
            self.job.last_error = error
            self.job.run_at = run_at
            self.store.schedule(self.job)

    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        if self._finish():
            self.job.status = JobStatus.DEAD
            self.job.reason = reason
            self.job.last_error = error
            self.job.traceback = traceback
            self.job.failed_at = self.store.clock()
            self.store.release_dedupe(self.job)

    async def release(self) -> None:
        if self._finish():
            if self.job.cancel_requested:
                self.store.finish_cancelled(self.job)
                return
            self.job.attempts = max(0, self.job.attempts - 1)
            self.store.make_ready(self.job)
            self.store.notify()

    async def extend(self, lease_ms: int) -> bool:
        if not self._held():
            return False
        self.job.lease_until = self.store.clock() + lease_ms / 1000
        return True

    async def cancel(self) -> None:
        if self._finish():
            self.store.finish_cancelled(self.job)


class MemoryBackend(PullBackend, WorkerRegistry):
    """In-process backend. Pass a shared :class:`MemoryStore` to let several instances see the same jobs."""

    name = "memory"
    capabilities = BackendCapabilities(
        durable=False,
        shared=False,
        purge_queue=True,
        cancel=True,
        progress=True,
        worker_registry=True,
        results=True,
    )

    def __init__(self, store: MemoryStore | None = None, **store_options: Any) -> None:
        self.store = store if store is not None else MemoryStore(**store_options)
        self._wakeup = asyncio.Event()

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        store, now = self.store, self.store.clock()
        results = []
        for outgoing in jobs:
            if outgoing.dedupe_key is not None:
                existing_id = store.dedupe.get(outgoing.dedupe_key)
                existing = store.jobs.get(existing_id) if existing_id else None
                if existing is not None and existing.status in LIVE_STATUSES:
                    results.append(PushResult(id=existing.id, created=False))
                    continue
            if outgoing.id in store.jobs:
                results.append(PushResult(id=outgoing.id, created=False))
                continue
            job = _StoredJob(
                id=outgoing.id,
                type=outgoing.type,
                queue=outgoing.queue,
                status=JobStatus.PENDING,
                priority=outgoing.priority,
                run_at=outgoing.run_at,
                created_at=outgoing.created_at,
                updated_at=now,
                dedupe_key=outgoing.dedupe_key,
                body=outgoing.body,
            )
            store.jobs[job.id] = job
            if job.dedupe_key is not None:
                store.dedupe[job.dedupe_key] = job.id
            store.schedule(job)
            results.append(PushResult(id=job.id, created=True))
        return results

    async def lease(
        self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float
    ) -> list[Delivery]:
        store = self.store
        deadline = time.monotonic() + wait
        waiter = asyncio.Event()
        store.waiters.add(waiter)
        try:
            while True:
                now = store.clock()
                store.promote_and_reclaim(now)
                deliveries: list[Delivery] = []
                while len(deliveries) < limit:
                    job = store.pop_ready(queues)
                    if job is None:
                        break
                    job.status = JobStatus.ACTIVE
                    job.attempts += 1
                    job.lease_token = next(store.tokens)
                    job.lease_until = now + lease_ms / 1000
                    job.updated_at = now
                    store.active.add(job.id)
                    deliveries.append(_MemoryDelivery(store, job, lease_ms))
                remaining = deadline - time.monotonic()
                if deliveries or remaining <= 0 or self._wakeup.is_set():
                    self._wakeup.clear()
                    return deliveries
                wakeup = store.next_wakeup()
                timeout = remaining if wakeup is None else min(remaining, max(wakeup - now, 0.001))
                waiter.clear()
                wake_task = asyncio.ensure_future(self._wakeup.wait())
                notify_task = asyncio.ensure_future(waiter.wait())
                try:
                    await asyncio.wait(
                        {wake_task, notify_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    wake_task.cancel()
                    notify_task.cancel()
        finally:
            store.waiters.discard(waiter)

    def wake(self) -> None:
        self._wakeup.set()

    async def get(self, job_id: str) -> JobRecord | None:
        job = self.store.jobs.get(job_id)
        if job is None:
            return None
        return JobRecord(
            id=job.id,
            type=job.type,
            queue=job.queue,
            status=self._reported_status(job, self.store.clock()),
            attempts=job.attempts,
            priority=job.priority,
            run_at=job.run_at,
            created_at=job.created_at,
            updated_at=job.updated_at,
            dedupe_key=job.dedupe_key,
            last_error=job.last_error,
            body=_bytes(job.body),
            progress=job.progress,
            cancel_requested=job.cancel_requested,
        )

    async def cancel(self, job_id: str) -> CancelOutcome:
        job = self.store.jobs.get(job_id)
        if job is None:
            return "not_found"
        if job.status in (JobStatus.SCHEDULED, JobStatus.PENDING):
            self.store.finish_cancelled(job)
            return "removed"
        if job.status is JobStatus.ACTIVE:
            job.cancel_requested = True
            return "requested"
        return "finished"

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        jobs = self.store.jobs
        return {
            job_id
            for job_id in job_ids
            if (job := jobs.get(job_id)) is not None
            and job.status is JobStatus.ACTIVE
            and job.cancel_requested
        }

    async def set_progress(self, job_id: str, progress: str) -> bool:
        job = self.store.jobs.get(job_id)
        if job is None or job.status not in LIVE_STATUSES:
            return False
        job.progress = progress
        return True

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        counts: dict[str, dict[JobStatus, int]] = {}
        now = self.store.clock()
        for job in self.store.jobs.values():
            per_queue = counts.setdefault(job.queue, {})
            status = self._reported_status(job, now)
            per_queue[status] = per_queue.get(status, 0) + 1
        return counts

    @staticmethod
    def _reported_status(job: _StoredJob, now: float) -> JobStatus:
        """A scheduled job whose time has come is ready, even before a lease promoted it."""
        if job.status is JobStatus.SCHEDULED and job.run_at <= now:
            return JobStatus.PENDING
        return job.status

    def _dead(self) -> list[_StoredJob]:
        dead = [job for job in self.store.jobs.values() if job.status is JobStatus.DEAD]
        dead.sort(key=lambda job: job.failed_at, reverse=True)
        return dead

    @staticmethod
    def _dead_letter(job: _StoredJob) -> DeadLetter:
        return DeadLetter(
            id=job.id,
            type=job.type,
            queue=job.queue,
            reason=job.reason or "",
            error=job.last_error,
            traceback=job.traceback,
            attempts=job.attempts,
            failed_at=job.failed_at,
            body=_bytes(job.body),
        )

    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        return [self._dead_letter(job) for job in self._dead()[offset : offset + limit]]

    async def get_dead(self, job_id: str) -> DeadLetter | None:
        job = self.store.jobs.get(job_id)
        return self._dead_letter(job) if job is not None and job.status is JobStatus.DEAD else None

    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        store = self.store
        job = store.jobs.get(job_id)
        if job is None or job.status is not JobStatus.DEAD:
            return False
        if job.dedupe_key is not None:
            holder = store.jobs.get(store.dedupe.get(job.dedupe_key, ""))
            if holder is not None and holder is not job and holder.status in LIVE_STATUSES:
                raise DedupeConflictError(job.id, job.dedupe_key, holder.id)
            store.dedupe[job.dedupe_key] = job.id
        job.attempts = 0
        job.reason = job.traceback = None
        job.run_at = run_at
        job.updated_at = store.clock()
        store.schedule(job)
        return True

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        targets = [job.id for job in self._dead()] if job_ids is None else list(job_ids)
        purged = 0
        for job_id in targets:
            job = self.store.jobs.get(job_id)
            if job is not None and job.status is JobStatus.DEAD:
                del self.store.jobs[job_id]
                purged += 1
        return purged

    async def purge_queue(self, queue: str) -> int:
        store = self.store
        doomed = [
            job
            for job in store.jobs.values()
            if job.queue == queue and job.status in (JobStatus.PENDING, JobStatus.SCHEDULED)
        ]
        for job in doomed:
            store.release_dedupe(job)
            del store.jobs[job.id]  # its heap entries go stale and are skipped
        store.ready.pop(queue, None)
        return len(doomed)

    # -- live workers -----------------------------------------------------------------------------------------

    def _live_workers(self) -> dict[str, tuple[WorkerInfo, float]]:
        workers, now = self.store.workers, self.store.clock()
        for worker_id in [key for key, (_, until) in workers.items() if until <= now]:
            del workers[worker_id]
        return workers

    async def register_worker(self, worker: WorkerInfo, ttl_ms: int) -> None:
        self.store.workers[worker.id] = (worker, self.store.clock() + ttl_ms / 1000)

    async def heartbeat_worker(self, worker: WorkerInfo, ttl_ms: int) -> bool:
        workers = self._live_workers()
        if worker.id not in workers:
            return False
        workers[worker.id] = (worker, self.store.clock() + ttl_ms / 1000)
        return True

    async def unregister_worker(self, worker_id: str) -> None:
        self.store.workers.pop(worker_id, None)

    async def list_workers(self) -> list[WorkerInfo]:
        return sorted((info for info, _ in self._live_workers().values()), key=lambda w: (w.started_at, w.id))


def _bytes(body: object) -> bytes:
    """A stored body as bytes, even when something other than the queue put another value in the store
    (text as its UTF-8, anything else as its repr): records are always readable, and the dispatcher
    dead-letters such a job as undecodable."""
    if type(body) is bytes:
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8", "backslashreplace")
    return repr(body).encode("utf-8", "backslashreplace")
