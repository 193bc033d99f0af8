"""A job ledger in a sqlite file: durable, shared by every process on the machine that opens the file.

The table is ``lssm_ledger_jobs`` (:mod:`lssm_jobs.entities.ledger_schema`, rendered on open), so a ledger
may share its file with a sqlite queue or scheduler store. As in the sqlite backend, each instance does its
sqlite work on one dedicated thread with its own connection (WAL journal), and every write is one short
``BEGIN IMMEDIATE`` transaction: claims and dedupe checks are atomic across processes.

Open it with ``SqliteLedger(path="ledger.db")``, or through the hook by name ``"sqlite"``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lssm_jobs.backends.base import DeadLetter, JobRecord, OutgoingJob, PushResult
from lssm_jobs.backends.sqlite_connection import (
    Synchronous,
    connect,
    database_file,
    immediate_transaction,
    read_transaction,
)
from lssm_jobs.entities import (
    LEDGER_JOBS_TABLE,
    LEDGER_SCHEMA_VERSION,
    LEDGER_SCHEMA_VERSION_TABLE,
    compose_schema,
    ledger_schema_contribution,
    render_sql_statements,
)
from lssm_jobs.errors import DedupeConflictError, LssmJobsError, QueueClosedError
from lssm_jobs.jobs import JobStatus
from lssm_jobs.ledger.base import FIRST_GENERATION, Claim, ClaimOutcome, JobLedger

T = TypeVar("T")

_LIVE = "('scheduled', 'pending', 'active')"
_RECORD_COLUMNS = (
    "id, type, queue, status, attempts, priority, run_at, created_at, updated_at, dedupe_key, last_error, "
    "body, finished_at, reason, traceback, generation, issued, lease_token, lease_until"
)
_ID_CHUNK = 500
PRUNE_BATCH = 2_000


class LedgerSchemaError(LssmJobsError):
    """The file's ledger tables were written by a newer lssm-jobs."""


def _waiting(run_at: float, now: float) -> str:
    return "scheduled" if run_at > now else "pending"


def ensure_ledger_schema(connection: sqlite3.Connection) -> None:
    """Create the ledger tables if missing (several processes may race: one transaction decides).

    :raises LedgerSchemaError: the file holds a newer ledger schema version.
    """
    with immediate_transaction(connection):
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if LEDGER_SCHEMA_VERSION_TABLE in tables:
            row = connection.execute(f'SELECT max("version") FROM "{LEDGER_SCHEMA_VERSION_TABLE}"').fetchone()
            found = int(row[0]) if row and row[0] is not None else 0
            if found > LEDGER_SCHEMA_VERSION:
                raise LedgerSchemaError(
                    f"the ledger tables have schema version {found}, newer than {LEDGER_SCHEMA_VERSION}; "
                    "upgrade lssm-jobs"
                )
            if found == LEDGER_SCHEMA_VERSION:
                return
        schema = compose_schema({"modules": [ledger_schema_contribution]})
        for statement in render_sql_statements(schema, "sqlite"):
            connection.execute(statement)
        connection.execute(
            f'INSERT INTO "{LEDGER_SCHEMA_VERSION_TABLE}" ("version", "applied_at", "description") '
            "VALUES (?, ?, ?)",
            (LEDGER_SCHEMA_VERSION, time.time(), "created"),
        )


class SqliteLedger(JobLedger):
    """Job records and dead letters in a sqlite file.

    :param path: the database file (created if missing; its directory must exist).
    :param url: alternatively ``sqlite:///relative.db`` or ``sqlite:////absolute.db``.
    :param busy_timeout: seconds to wait for another process's write lock.
    :param completed_retention: seconds completed jobs stay readable (default 3600; duplicate deliveries of
        a job arriving within it are recognised as such).
    :param prune_interval: seconds between prunes of expired completed records (done while completing).
    :param synchronous: ``"normal"`` (survives process crashes) or ``"full"`` (also power loss).
    :raises ValueError: neither or both of ``path`` and ``url``, an in-memory database, or a bad option.
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        busy_timeout: float = 5.0,
        completed_retention: float = 3600.0,
        prune_interval: float = 60.0,
        synchronous: Synchronous = "normal",
    ) -> None:
        target = database_file(path, url, owner="the sqlite ledger", instead="for an in-process one use 'memory'")
        if completed_retention < 0 or busy_timeout < 0 or prune_interval <= 0:
            raise ValueError("completed_retention and busy_timeout must be >= 0, prune_interval > 0")
        self.path = target
        self.busy_timeout = float(busy_timeout)
        self.completed_retention = float(completed_retention)
        self.prune_interval = float(prune_interval)
        self.synchronous: Synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._next_prune = 0.0

    @classmethod
    def from_options(cls, **options: Any) -> SqliteLedger:
        return cls(**options)

    def __repr__(self) -> str:
        return f"SqliteLedger(path={self.path!r})"

    # -- the database thread ---------------------------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        executor = self._executor
        if executor is None:
            raise QueueClosedError(f"the sqlite ledger on {self.path!r} is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(function, *args))

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise QueueClosedError(f"the sqlite ledger on {self.path!r} is not open")
        return self._connection

    async def open(self) -> None:
        """:raises ConnectionError: the file cannot be opened. :raises LedgerSchemaError: newer tables."""
        if self._executor is not None:
            raise RuntimeError(f"{self!r} is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lssm-jobs-ledger")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open_sync(self) -> None:
        connection = connect(self.path, busy_timeout=self.busy_timeout, synchronous=self.synchronous)
        try:
            ensure_ledger_schema(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write(self, sql: str, params: Sequence[Any]) -> bool:
        with immediate_transaction(self._db) as db:
            return db.execute(sql, params).rowcount == 1

    def _expired(self, now: float) -> tuple[str, float]:
        return "status = 'completed' AND finished_at <= ?", now - self.completed_retention

    # -- producing ---------------------------------------------------------------------------------------------

    async def record(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        if not jobs:
            return []
        return await self._run(self._record_sync, list(jobs))

    def _record_sync(self, jobs: list[OutgoingJob]) -> list[PushResult]:
        now = time.time()
        expired, cutoff = self._expired(now)
        results = []
        with immediate_transaction(self._db) as db:
            for job in jobs:
                if job.dedupe_key is not None:
                    live = db.execute(
                        f"SELECT id FROM {LEDGER_JOBS_TABLE} WHERE dedupe_key = ? AND status IN {_LIVE} LIMIT 1",
                        (job.dedupe_key,),
                    ).fetchone()
                    if live is not None:
                        results.append(PushResult(id=live[0], created=False))
                        continue
                # A completed record past its retention that was not pruned yet gives way to the new job.
                db.execute(f"DELETE FROM {LEDGER_JOBS_TABLE} WHERE id = ? AND {expired}", (job.id, cutoff))
                inserted = db.execute(
                    f"INSERT INTO {LEDGER_JOBS_TABLE} (id, type, queue, status, attempts, priority, run_at, "
                    "created_at, updated_at, dedupe_key, generation, issued, body) "
                    "VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        job.id,
                        job.type,
                        job.queue,
                        _waiting(job.run_at, now),
                        job.priority,
                        job.run_at,
                        job.created_at,
                        now,
                        job.dedupe_key,
                        FIRST_GENERATION,
                        FIRST_GENERATION,
                        job.body,
                    ),
                )
                results.append(PushResult(id=job.id, created=inserted.rowcount == 1))
        return results

    async def discard(self, job_ids: Sequence[str]) -> int:
        return await self._run(self._discard_sync, list(job_ids))

    def _discard_sync(self, job_ids: list[str]) -> int:
        discarded = 0
        with immediate_transaction(self._db) as db:
            for start in range(0, len(job_ids), _ID_CHUNK):
                chunk = job_ids[start : start + _ID_CHUNK]
                marks = ", ".join("?" * len(chunk))
                discarded += db.execute(
                    f"DELETE FROM {LEDGER_JOBS_TABLE} WHERE id IN ({marks}) AND status IN "
                    "('scheduled', 'pending') AND attempts = 0 AND generation = ?",
                    (*chunk, FIRST_GENERATION),
                ).rowcount
        return discarded

    # -- delivering ----------------------------------------------------------------------------------------------

    async def begin(self, job_id: str, *, generation: int, lease_ms: int, tolerance: float = 1.0) -> Claim:
        return await self._run(self._begin_sync, job_id, generation, lease_ms, tolerance)

    def _begin_sync(self, job_id: str, generation: int, lease_ms: int, tolerance: float) -> Claim:
        now = time.time()
        expired, cutoff = self._expired(now)
        with immediate_transaction(self._db) as db:
            row = db.execute(
                f"SELECT status, generation, lease_until, run_at, queue, attempts, issued, body "
                f"FROM {LEDGER_JOBS_TABLE} WHERE id = ? AND NOT ({expired})",
                (job_id, cutoff),
            ).fetchone()
            if row is None:
                return Claim(outcome=ClaimOutcome.UNKNOWN, job_id=job_id)
            status, current, lease_until, run_at, queue, attempts, issued, body = row
            common: dict[str, Any] = {
                "job_id": job_id,
                "generation": current,
                "run_at": run_at,
                "queue": queue,
            }
            if generation > current:
                return Claim(outcome=ClaimOutcome.EARLY, **common)
            if status in ("completed", "dead"):
                return Claim(outcome=ClaimOutcome.FINISHED, **common)
            if generation < current:
                return Claim(outcome=ClaimOutcome.SUPERSEDED, **common)
            if status == "active" and (lease_until or 0.0) > now:
                return Claim(outcome=ClaimOutcome.BUSY, **common)
            if status == "scheduled" and run_at > now + tolerance:
                return Claim(outcome=ClaimOutcome.NOT_DUE, **common)
            token = secrets.token_hex(16)
            db.execute(
                f"UPDATE {LEDGER_JOBS_TABLE} SET status = 'active', attempts = attempts + 1, lease_token = ?, "
                "lease_until = ?, issued = issued + 1, updated_at = ? WHERE id = ?",
                (token, now + lease_ms / 1000, now, job_id),
            )
        return Claim(
            outcome=ClaimOutcome.RUN,
            attempt=attempts + 1,
            token=token,
            next_generation=issued + 1,
            body=bytes(body),
            **common,
        )

    _HELD = "id = ? AND lease_token = ? AND status = 'active'"

    async def extend(self, job_id: str, token: str, *, lease_ms: int) -> bool:
        return await self._run(
            self._write,
            f"UPDATE {LEDGER_JOBS_TABLE} SET lease_until = ? WHERE {self._HELD}",
            (time.time() + lease_ms / 1000, job_id, token),
        )

    async def complete(self, job_id: str, token: str) -> bool:
        return await self._run(self._complete_sync, job_id, token)

    def _complete_sync(self, job_id: str, token: str) -> bool:
        now = time.time()
        if self.completed_retention <= 0:
            return self._write(f"DELETE FROM {LEDGER_JOBS_TABLE} WHERE {self._HELD}", (job_id, token))
        done = self._write(
            f"UPDATE {LEDGER_JOBS_TABLE} SET status = 'completed', finished_at = ?, updated_at = ?, "
            f"lease_token = NULL, lease_until = NULL WHERE {self._HELD}",
            (now, now, job_id, token),
        )
        if now >= self._next_prune:
            self._prune_sync(now)
        return done

    async def reschedule(
        self, job_id: str, token: str, *, run_at: float, error: str, generation: int | None
    ) -> bool:
        now = time.time()
        return await self._run(
            self._write,
            f"UPDATE {LEDGER_JOBS_TABLE} SET status = ?, run_at = ?, last_error = ?, updated_at = ?, "
            "lease_token = NULL, lease_until = NULL, generation = coalesce(?, generation), "
            f"issued = max(issued, coalesce(?, generation)) WHERE {self._HELD}",
            (_waiting(run_at, now), run_at, error, now, generation, generation, job_id, token),
        )

    async def release(self, job_id: str, token: str) -> bool:
        return await self._run(
            self._write,
            f"UPDATE {LEDGER_JOBS_TABLE} SET status = 'pending', attempts = max(attempts - 1, 0), "
            f"updated_at = ?, lease_token = NULL, lease_until = NULL WHERE {self._HELD}",
            (time.time(), job_id, token),
        )

    async def dead_letter(
        self, job_id: str, token: str, *, reason: str, error: str | None, traceback: str | None
    ) -> bool:
        now = time.time()
        return await self._run(
            self._write,
            f"UPDATE {LEDGER_JOBS_TABLE} SET status = 'dead', finished_at = ?, updated_at = ?, reason = ?, "
            f"last_error = ?, traceback = ?, lease_token = NULL, lease_until = NULL WHERE {self._HELD}",
            (now, now, reason, error, traceback, job_id, token),
        )

    # -- inspecting ------------------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._run(self._get_sync, job_id)

    def _get_sync(self, job_id: str) -> JobRecord | None:
        now = time.time()
        expired, cutoff = self._expired(now)
        row = self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM {LEDGER_JOBS_TABLE} WHERE id = ? AND NOT ({expired})",
            (job_id, cutoff),
        ).fetchone()
        if row is None:
            return None
        status = row[3]
        if status in ("scheduled", "pending"):
            status = _waiting(row[6], now)
        return JobRecord(
            id=row[0],
            type=row[1],
            queue=row[2],
            status=JobStatus(status),
            attempts=row[4],
            priority=row[5],
            run_at=row[6],
            created_at=row[7],
            updated_at=row[8],
            dedupe_key=row[9],
            last_error=row[10],
            body=bytes(row[11]),
        )

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        return await self._run(self._counts_sync)

    def _counts_sync(self) -> dict[str, dict[JobStatus, int]]:
        now = time.time()
        expired, cutoff = self._expired(now)
        with read_transaction(self._db) as db:
            rows = db.execute(
                "SELECT queue, CASE WHEN status IN ('scheduled', 'pending') THEN "
                "(CASE WHEN run_at > ? THEN 'scheduled' ELSE 'pending' END) ELSE status END AS state, "
                f"count(*) FROM {LEDGER_JOBS_TABLE} WHERE NOT ({expired}) GROUP BY queue, state",
                (now, cutoff),
            ).fetchall()
        counts: dict[str, dict[JobStatus, int]] = {}
        for queue, state, count in rows:
            counts.setdefault(queue, {})[JobStatus(state)] = count
        return counts

    @staticmethod
    def _letter(row: Sequence[Any]) -> DeadLetter:
        return DeadLetter(
            id=row[0],
            type=row[1],
            queue=row[2],
            reason=row[13] or "",
            error=row[10],
            traceback=row[14],
            attempts=row[4],
            failed_at=row[12],
            body=bytes(row[11]),
        )

    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        rows = await self._run(
            lambda: self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM {LEDGER_JOBS_TABLE} WHERE status = 'dead' "
                "ORDER BY finished_at DESC, id DESC LIMIT ? OFFSET ?",
                (max(limit, 0), max(offset, 0)),
            ).fetchall()
        )
        return [self._letter(row) for row in rows]

    async def get_dead(self, job_id: str) -> DeadLetter | None:
        row = await self._run(
            lambda: self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM {LEDGER_JOBS_TABLE} WHERE id = ? AND status = 'dead'",
                (job_id,),
            ).fetchone()
        )
        return self._letter(row) if row is not None else None

    # -- dead letters ------------------------------------------------------------------------------------------------

    async def reserve_generation(self, job_id: str) -> int | None:
        return await self._run(self._reserve_sync, job_id)

    def _reserve_sync(self, job_id: str) -> int | None:
        with immediate_transaction(self._db) as db:
            db.execute(f"UPDATE {LEDGER_JOBS_TABLE} SET issued = issued + 1 WHERE id = ?", (job_id,))
            row = db.execute(f"SELECT issued FROM {LEDGER_JOBS_TABLE} WHERE id = ?", (job_id,)).fetchone()
        return int(row[0]) if row is not None else None

    async def replay_dead(self, job_id: str, *, run_at: float, generation: int) -> bool:
        return await self._run(self._replay_sync, job_id, run_at, generation)

    def _replay_sync(self, job_id: str, run_at: float, generation: int) -> bool:
        now = time.time()
        with immediate_transaction(self._db) as db:
            row = db.execute(
                f"SELECT dedupe_key FROM {LEDGER_JOBS_TABLE} WHERE id = ? AND status = 'dead'", (job_id,)
            ).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                live = db.execute(
                    f"SELECT id FROM {LEDGER_JOBS_TABLE} WHERE dedupe_key = ? AND status IN {_LIVE} LIMIT 1",
                    (row[0],),
                ).fetchone()
                if live is not None:
                    raise DedupeConflictError(job_id, row[0], live[0])
            db.execute(
                f"UPDATE {LEDGER_JOBS_TABLE} SET status = ?, run_at = ?, attempts = 0, updated_at = ?, "
                "generation = ?, issued = max(issued, ?), finished_at = NULL, reason = NULL, traceback = NULL "
                "WHERE id = ?",
                (_waiting(run_at, now), run_at, now, generation, generation, job_id),
            )
        return True

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        return await self._run(self._purge_sync, None if job_ids is None else list(job_ids))

    def _purge_sync(self, job_ids: list[str] | None) -> int:
        with immediate_transaction(self._db) as db:
            if job_ids is None:
                return db.execute(f"DELETE FROM {LEDGER_JOBS_TABLE} WHERE status = 'dead'").rowcount
            purged = 0
            for start in range(0, len(job_ids), _ID_CHUNK):
                chunk = job_ids[start : start + _ID_CHUNK]
                marks = ", ".join("?" * len(chunk))
                purged += db.execute(
                    f"DELETE FROM {LEDGER_JOBS_TABLE} WHERE id IN ({marks}) AND status = 'dead'", chunk
                ).rowcount
            return purged

    # -- retention -----------------------------------------------------------------------------------------------------

    def _prune_sync(self, now: float) -> int:
        self._next_prune = now + self.prune_interval
        expired, cutoff = self._expired(now)
        deleted = 0
        while True:
            with immediate_transaction(self._db) as db:
                batch = db.execute(
                    f"DELETE FROM {LEDGER_JOBS_TABLE} WHERE rowid IN (SELECT rowid FROM {LEDGER_JOBS_TABLE} "
                    f"WHERE {expired} LIMIT ?)",
                    (cutoff, PRUNE_BATCH),
                ).rowcount
            deleted += batch
            if batch < PRUNE_BATCH:
                return deleted
