"""The sqlite backend: the conformance suite, plus what only a file shared by processes can show: durability
across reopen, schema upgrades, stale lease tokens, idle waiting, SIGKILLed workers and several producer and
worker processes on one file."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.backends.base import OutgoingJob, PushResult, QueueBackend
from lssm_jobs.backends.memory import MemoryBackend
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.backends.sqlite_connection import parse_sqlite_url
from lssm_jobs.backends.sqlite_schema import SchemaVersionError, schema_version
from lssm_jobs.entities import JOBS_SCHEMA_VERSION
from lssm_jobs.errors import QueueClosedError
from lssm_jobs.jobs import JobStatus
from lssm_jobs.plugins import get_plugins
from lssm_jobs.queue import JobQueue, open_queue
from lssm_jobs.testing import BackendConformance, opened, run_async, wait_until
from lssm_jobs.testing.helpers import raw_job

PROCS = Path(__file__).parent / "sqlite_procs.py"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


# -- the conformance suite ------------------------------------------------------------------------------


class TestSqliteConformance(BackendConformance):
    @pytest.fixture
    def lssm_jobs_backend_factory(self, database: Path) -> Callable[[], QueueBackend]:
        return lambda: SqliteBackend(path=database)


# The whole suite again on the pre-3.35 code path: part of `nox -s tests`, left out of the fast loop.
@pytest.mark.integration
class TestSqliteConformanceWithoutReturning(BackendConformance):
    """The lease path for sqlite older than 3.35 (no ``UPDATE ... RETURNING``), forced on."""

    @pytest.fixture
    def lssm_jobs_backend_factory(self, database: Path) -> Callable[[], QueueBackend]:
        def make() -> QueueBackend:
            backend = SqliteBackend(path=database)
            backend.use_returning = False
            return backend

        return make


# -- helpers ---------------------------------------------------------------------------------------------


def _job(
    queue: str = "default",
    *,
    run_at: float | None = None,
    priority: int = 0,
    dedupe_key: str | None = None,
    body: bytes = b"{}",
    job_id: str | None = None,
) -> OutgoingJob:
    return raw_job(
        type="t", queue=queue, priority=priority, run_at=run_at, dedupe_key=dedupe_key, body=body, job_id=job_id
    )


async def _completed(backend: SqliteBackend, job_id: str) -> bool:
    record = await backend.get(job_id)
    return record is not None and record.status is JobStatus.COMPLETED


def _sql(path: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the file directly (as another program would), commit, close."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(statement, params).fetchall()
        connection.commit()
        return rows
    finally:
        connection.close()


async def _status(backend: SqliteBackend, job_id: str) -> JobStatus | None:
    record = await backend.get(job_id)
    return None if record is None else record.status


# -- options and registration ----------------------------------------------------------------------------


def test_options_and_urls(tmp_path: Path) -> None:
    assert parse_sqlite_url("sqlite:///jobs.db") == "jobs.db"
    assert parse_sqlite_url("sqlite:////var/lib/jobs.db") == "/var/lib/jobs.db"
    for bad in ("postgres://x/y", "sqlite:///", "sqlite:///jobs.db?mode=ro"):
        with pytest.raises(ValueError):
            parse_sqlite_url(bad)
    assert SqliteBackend(url=f"sqlite:///{tmp_path}/a.db").path == f"{tmp_path}/a.db"
    with pytest.raises(ValueError, match="exactly one of path= or url="):
        SqliteBackend()
    with pytest.raises(ValueError, match="exactly one of path= or url="):
        SqliteBackend(tmp_path / "a.db", url="sqlite:///b.db")
    with pytest.raises(ValueError, match="'memory' backend"):
        SqliteBackend(":memory:")
    with pytest.raises(ValueError, match="completed_retention must be >= 0"):
        SqliteBackend(tmp_path / "a.db", completed_retention=-1)
    with pytest.raises(ValueError, match="synchronous"):
        SqliteBackend(tmp_path / "a.db", synchronous="off")  # type: ignore[arg-type]


@run_async()
async def test_registered_as_a_builtin_plugin(tmp_path: Path) -> None:
    spec = get_plugins().queue_backend("sqlite")
    assert spec.capabilities.durable and spec.capabilities.shared and spec.capabilities.leases
    assert {"path", "url", "busy_timeout", "completed_retention"} <= set(spec.options_help)
    async with open_queue("sqlite", url=f"sqlite:///{tmp_path}/q.db", sinks=[], busy_timeout=1.0) as queue:
        assert isinstance(queue.backend, SqliteBackend) and queue.backend.busy_timeout == 1.0
        job = await queue.enqueue("anything", {"x": 1})
        assert (await queue.get(job.id)) is not None


@run_async()
async def test_open_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="cannot open sqlite database"):
        await SqliteBackend(tmp_path / "missing-dir" / "jobs.db").open()
    not_a_db = tmp_path / "text.db"
    not_a_db.write_text("this is not a database" * 100)
    with pytest.raises(ConnectionError, match="cannot use sqlite database"):
        await SqliteBackend(not_a_db).open()
    foreign = tmp_path / "foreign.db"
    _sql(foreign, "CREATE TABLE lssm_jobs (id TEXT)")
    with pytest.raises(SchemaVersionError, match="not created by lssm-jobs"):
        await SqliteBackend(foreign).open()
    backend = SqliteBackend(tmp_path / "closed.db")
    with pytest.raises(QueueClosedError, match="not open"):
        await backend.get("x")


# -- durability and the file ---------------------------------------------------------------------------------


@run_async()
async def test_everything_survives_close_and_reopen(database: Path) -> None:
    running, released, doomed, done = (_job(priority=p, dedupe_key=f"k{p}") for p in (9, 8, 7, 6))
    delayed = _job(run_at=time.time() + 3600)
    async with opened(SqliteBackend(database)) as backend:
        await backend.push([running, released, doomed, done, delayed])
        leased = await backend.lease(queues=None, limit=10, lease_ms=60_000, wait=0)
        assert [d.id for d in leased] == [running.id, released.id, doomed.id, done.id]
        await leased[1].release()
        await leased[2].dead_letter(reason="boom", error="E", traceback="TB")
        await leased[3].ack()
    async with opened(SqliteBackend(database)) as reopened:
        assert await _status(reopened, running.id) is JobStatus.ACTIVE
        assert await _status(reopened, released.id) is JobStatus.PENDING
        assert await _status(reopened, done.id) is JobStatus.COMPLETED
        assert await _status(reopened, delayed.id) is JobStatus.SCHEDULED
        dead = await reopened.get_dead(doomed.id)
        assert dead is not None and (dead.reason, dead.error, dead.traceback) == ("boom", "E", "TB")
        for live in (running, released):  # live jobs' dedupe keys still hold; finished ones are free
            assert await reopened.push([_job(dedupe_key=live.dedupe_key)]) == [
                PushResult(id=live.id, created=False)
            ]
        for finished in (doomed, done):
            assert (await reopened.push([_job(dedupe_key=finished.dedupe_key)]))[0].created
        assert (await reopened.counts())["default"] == {
            JobStatus.ACTIVE: 1,
            JobStatus.PENDING: 3,
            JobStatus.COMPLETED: 1,
            JobStatus.SCHEDULED: 1,
            JobStatus.DEAD: 1,
        }
    assert _sql(database, "PRAGMA journal_mode") == [("wal",)]


@run_async()
async def test_ack_after_a_lost_lease_changes_nothing(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        job = _job()
        await backend.push([job])
        (first,) = await backend.lease(queues=None, limit=1, lease_ms=50, wait=0)
        await wait_until(
            lambda: backend.lease(queues=None, limit=1, lease_ms=60_000, wait=0.05),
            message="the expired job leased again",
        )
        record = await backend.get(job.id)
        assert record is not None and record.status is JobStatus.ACTIVE and record.attempts == 2
        # the first worker wakes up late: none of its settles may touch the job now held by the second
        assert await first.extend(60_000) is False
        await first.ack()
        await first.retry(run_at=time.time(), error="late")
        await first.dead_letter(reason="late", error=None, traceback=None)
        await first.release()
        record = await backend.get(job.id)
        assert record is not None and record.status is JobStatus.ACTIVE and record.last_error is None
        assert await backend.get_dead(job.id) is None


@run_async()
async def test_settle_operations(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        jobs = [_job(body=bytes([n, 0, 255])) for n in range(4)]
        await backend.push(jobs)
        deliveries = {d.id: d for d in await backend.lease(queues=None, limit=4, lease_ms=60_000, wait=0)}
        assert all(d.attempt == 1 and d.lease_ms == 60_000 for d in deliveries.values())
        released, retried, later, dead = (deliveries[job.id] for job in jobs)
        await released.release()
        record = await backend.get(released.id)
        assert record is not None and record.status is JobStatus.PENDING and record.attempts == 0
        await retried.retry(run_at=time.time() - 1, error="try again")
        record = await backend.get(retried.id)
        assert record is not None and (record.status, record.attempts, record.last_error) == (
            JobStatus.PENDING,
            1,
            "try again",
        )
        await later.retry(run_at=time.time() + 3600, error="much later")
        assert await _status(backend, later.id) is JobStatus.SCHEDULED
        assert await dead.extend(1_000) is True
        await dead.dead_letter(reason="poison", error="ValueError: x", traceback="Traceback ...")
        letter = await backend.get_dead(dead.id)
        assert letter is not None and letter.body == bytes([3, 0, 255]) and letter.attempts == 1
        record = await backend.get(dead.id)
        assert record is not None and record.status is JobStatus.DEAD and record.last_error == "ValueError: x"
        again = await backend.lease(queues=None, limit=5, lease_ms=60_000, wait=0)
        assert {d.id: d.attempt for d in again} == {released.id: 1, retried.id: 2}


@run_async()
async def test_dedupe_covers_live_jobs_only(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        first = _job(dedupe_key="report", run_at=time.time() + 60)
        same_batch = _job(dedupe_key="report")
        results = await backend.push([first, same_batch])
        assert [(r.id, r.created) for r in results] == [(first.id, True), (first.id, False)]
        assert (await backend.push([first]))[0].created is False  # same id again: stored once
        _sql(database, "UPDATE lssm_jobs SET run_at = 0, status = 'pending'")  # make it due now
        (delivery,) = await backend.lease(queues=None, limit=1, lease_ms=60_000, wait=0)
        assert (await backend.push([_job(dedupe_key="report")]))[0].id == first.id  # active is live
        await delivery.ack()
        fresh = _job(dedupe_key="report")
        assert await backend.push([fresh]) == [PushResult(id=fresh.id, created=True)]


@run_async()
async def test_priority_then_run_at_order_and_queue_filters(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        base = time.time() - 100
        jobs = [
            _job("a", priority=0, run_at=base + 1),
            _job("b", priority=9, run_at=base + 5),
            _job("a", priority=9, run_at=base + 2),
            _job("c", priority=3, run_at=base + 0),
            _job("a", priority=0, run_at=base + 0),
        ]
        await backend.push(jobs)
        only_a = await backend.lease(queues=["a"], limit=10, lease_ms=60_000, wait=0)
        assert [d.id for d in only_a] == [jobs[2].id, jobs[4].id, jobs[0].id]
        rest = await backend.lease(queues=["b", "c", "x"], limit=1, lease_ms=60_000, wait=0)
        assert [d.id for d in rest] == [jobs[1].id]
        assert [d.id for d in await backend.lease(queues=None, limit=10, lease_ms=60_000, wait=0)] == [
            jobs[3].id
        ]


@run_async()
async def test_completed_retention_and_pruning(tmp_path: Path) -> None:
    async with opened(SqliteBackend(tmp_path / "keep.db", completed_retention=0.3)) as backend:
        job = _job()
        await backend.push([job])
        (delivery,) = await backend.lease(queues=None, limit=1, lease_ms=60_000, wait=0)
        await delivery.ack()
        assert await _status(backend, job.id) is JobStatus.COMPLETED
        assert (await backend.counts())["default"] == {JobStatus.COMPLETED: 1}
        assert await backend.prune() == 0
        await wait_until(lambda: _none(backend.get(job.id)), message="completed job hidden after retention")
        assert await backend.counts() == {}
        assert await backend.prune() == 1
        assert await backend.prune() == 0
    async with opened(SqliteBackend(tmp_path / "drop.db", completed_retention=0)) as backend:
        job = _job()
        await backend.push([job])
        (delivery,) = await backend.lease(queues=None, limit=1, lease_ms=60_000, wait=0)
        await delivery.ack()
        assert await backend.get(job.id) is None
    assert _sql(tmp_path / "drop.db", "SELECT count(*) FROM lssm_jobs") == [(0,)]


async def _none(awaitable: Any) -> bool:
    return (await awaitable) is None


@run_async()
async def test_dead_letter_listing_replay_and_purge(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        jobs = [_job(priority=n, dedupe_key=f"k{n}", body=b"\x00raw" + bytes([n])) for n in range(5)]
        await backend.push(jobs)
        for delivery in await backend.lease(queues=None, limit=5, lease_ms=60_000, wait=0):
            await delivery.dead_letter(reason=f"r{delivery.id}", error=None, traceback=None)
            await asyncio.sleep(0.002)  # distinct failed_at values, so "most recent first" is observable
        listed = await backend.list_dead()
        # leased (and dead-lettered) highest priority first, so the lowest priority died most recently
        assert [d.id for d in listed] == [job.id for job in jobs]
        assert [d.id for d in await backend.list_dead(limit=2, offset=1)] == [jobs[1].id, jobs[2].id]
        assert all(d.body == job.body for d, job in zip(listed, jobs, strict=True))
        assert (await backend.counts())["default"] == {JobStatus.DEAD: 5}
        assert await backend.replay_dead(jobs[0].id, run_at=time.time()) is True
        assert await backend.replay_dead(jobs[0].id, run_at=time.time()) is False
        replayed = await backend.get(jobs[0].id)
        assert replayed is not None and (
            replayed.status,
            replayed.attempts,
            replayed.dedupe_key,
            replayed.priority,
        ) == (JobStatus.PENDING, 0, "k0", 0)
        assert (await backend.push([_job(dedupe_key="k0")]))[0].id == jobs[0].id
        assert await backend.purge_dead([jobs[1].id, "missing"]) == 1
        assert await backend.purge_dead() == 3
        assert await backend.list_dead() == []


# -- waiting without polling ---------------------------------------------------------------------------------


@run_async()
async def test_idle_lease_sleeps_instead_of_polling(database: Path) -> None:
    statements: list[str] = []
    async with opened(SqliteBackend(database)) as backend:
        await backend.run_in_connection(lambda connection: connection.set_trace_callback(statements.append))
        cpu, started = time.process_time(), time.monotonic()
        assert await backend.lease(queues=None, limit=5, lease_ms=1_000, wait=1.0) == []
        elapsed, cpu_used = time.monotonic() - started, time.process_time() - cpu
        await backend.run_in_connection(lambda connection: connection.set_trace_callback(None))
    assert 0.95 <= elapsed < 2.0
    looks = [statement for statement in statements if statement.startswith("SELECT EXISTS")]
    assert len(looks) == 2, statements  # one look, a sleep for the whole wait, one last look
    assert len(statements) <= 10, statements  # the looks, the next-due queries and one retention prune
    assert cpu_used < 0.3


@run_async()
async def test_push_in_this_process_wakes_a_waiting_lease_at_once(database: Path) -> None:
    async with opened(SqliteBackend(database)) as consumer, opened(SqliteBackend(database)) as producer:
        started = time.monotonic()
        waiting = asyncio.ensure_future(consumer.lease(queues=None, limit=1, lease_ms=1_000, wait=20.0))
        await wait_until(lambda: consumer._hub.waiting(), message="the lease is waiting")
        assert not waiting.done()
        job = _job()
        await producer.push([job])
        leased = await asyncio.wait_for(waiting, 5)
        assert [d.id for d in leased] == [job.id] and time.monotonic() - started < 2.0


@run_async()
async def test_lease_wakes_when_a_delayed_job_is_due_and_on_wake(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        job = _job(run_at=time.time() + 0.4)
        await backend.push([job])
        started = time.monotonic()
        leased = await backend.lease(queues=None, limit=1, lease_ms=1_000, wait=20.0)
        assert [d.id for d in leased] == [job.id]
        assert 0.3 <= time.monotonic() - started < 2.0

        waiting = asyncio.ensure_future(backend.lease(queues=None, limit=1, lease_ms=1_000, wait=20.0))
        await wait_until(lambda: backend._hub.waiting(), message="the lease is waiting")
        backend.wake()
        assert await asyncio.wait_for(waiting, 2) == []


@run_async()
async def test_a_cancelled_lease_gives_its_jobs_back(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        job = _job()
        await backend.push([job])
        gate = threading.Event()
        # Hold the database thread, so the lease's transaction runs only after its caller was cancelled.
        blocker = asyncio.ensure_future(backend.run_in_connection(lambda connection: gate.wait(10)))
        leasing = asyncio.ensure_future(backend.lease(queues=None, limit=1, lease_ms=60_000, wait=0))
        await asyncio.sleep(0.05)
        leasing.cancel()
        gate.set()
        await blocker
        with pytest.raises(asyncio.CancelledError):
            await leasing

        async def released() -> bool:
            record = await backend.get(job.id)
            return record is not None and record.status is JobStatus.PENDING and record.attempts == 0

        await wait_until(released, message="the job leased for a cancelled caller is pending again")


@run_async()
async def test_concurrent_leases_never_share_a_job(database: Path) -> None:
    backends = [SqliteBackend(database) for _ in range(4)]
    for backend in backends:
        await backend.open()
    try:
        await backends[0].push([_job() for _ in range(300)])
        seen: list[str] = []

        async def drain(backend: SqliteBackend) -> None:
            while True:
                deliveries = await backend.lease(queues=None, limit=7, lease_ms=60_000, wait=0)
                if not deliveries:
                    return
                seen.extend(d.id for d in deliveries)
                await asyncio.gather(*(d.ack() for d in deliveries))

        await asyncio.gather(*(drain(backend) for backend in backends))
        assert len(seen) == 300 and len(set(seen)) == 300
    finally:
        for backend in backends:
            await backend.close()


# -- schema versions ---------------------------------------------------------------------------------------

# The tables as lssm-jobs schema version 1 created them (frozen here, as a v1 user's file would have them).
V1_SCHEMA = """
CREATE TABLE "lssm_jobs" (
    "id" TEXT NOT NULL, "type" TEXT NOT NULL, "queue" TEXT NOT NULL DEFAULT 'default',
    "status" TEXT NOT NULL DEFAULT 'pending', "attempts" INTEGER NOT NULL DEFAULT 0,
    "priority" INTEGER NOT NULL DEFAULT 0, "run_at" REAL NOT NULL, "created_at" REAL NOT NULL,
    "updated_at" REAL NOT NULL, "dedupe_key" TEXT, "last_error" TEXT, "lease_until" REAL, "lease_token" TEXT,
    "body" BLOB NOT NULL, PRIMARY KEY ("id")
);
CREATE INDEX "lssm_jobs_lease_idx" ON "lssm_jobs" ("queue", "status", "priority" DESC, "run_at", "created_at");
CREATE INDEX "lssm_jobs_lease_any_queue_idx" ON "lssm_jobs" ("status", "priority" DESC, "run_at", "created_at");
CREATE INDEX "lssm_jobs_due_idx" ON "lssm_jobs" ("status", "run_at");
CREATE INDEX "lssm_jobs_lease_expiry_idx" ON "lssm_jobs" ("status", "lease_until");
CREATE INDEX "lssm_jobs_dedupe_idx" ON "lssm_jobs" ("dedupe_key");
CREATE TABLE "lssm_dead_letters" (
    "id" TEXT NOT NULL, "type" TEXT NOT NULL, "queue" TEXT NOT NULL, "priority" INTEGER NOT NULL DEFAULT 0,
    "run_at" REAL NOT NULL, "created_at" REAL NOT NULL, "dedupe_key" TEXT,
    "attempts" INTEGER NOT NULL DEFAULT 0, "reason" TEXT NOT NULL, "error" TEXT, "traceback" TEXT,
    "failed_at" REAL NOT NULL, "body" BLOB NOT NULL, PRIMARY KEY ("id")
);
CREATE INDEX "lssm_dead_letters_failed_at_idx" ON "lssm_dead_letters" ("failed_at");
CREATE INDEX "lssm_dead_letters_queue_idx" ON "lssm_dead_letters" ("queue");
CREATE TABLE "lssm_schema_version" (
    "version" INTEGER NOT NULL, "applied_at" REAL NOT NULL, "description" TEXT NOT NULL DEFAULT '',
    PRIMARY KEY ("version")
);
INSERT INTO "lssm_schema_version" VALUES (1, 0, 'created');
"""


def _index_predicate(connection: sqlite3.Connection, index: str) -> str | None:
    """The WHERE of a partial index as sqlite keeps it (its CREATE statement), whitespace collapsed."""
    row = connection.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)).fetchone()
    if row is None or row[0] is None:  # an automatic index (primary key)
        return None
    sql = " ".join(row[0].split())
    return sql.split(" WHERE ", 1)[1] if " WHERE " in sql else None


def _layout(path: Path) -> dict[str, Any]:
    """Columns (type, not null, default, pk), indexes (key columns with direction, unique, partial and the
    WHERE of a partial index) and foreign keys of every table; column order is ignored (ALTER TABLE
    appends)."""
    layout: dict[str, Any] = {}
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = {row[1]: row[2:] for row in connection.execute(f'PRAGMA table_info("{table}")')}
            indexes = {
                row[1]: (
                    [tuple(c[2:4]) for c in connection.execute(f'PRAGMA index_xinfo("{row[1]}")') if c[5]],
                    row[2],
                    row[4],
                    _index_predicate(connection, row[1]),
                )
                for row in connection.execute(f'PRAGMA index_list("{table}")')
            }
            keys = sorted(tuple(row[2:]) for row in connection.execute(f'PRAGMA foreign_key_list("{table}")'))
            layout[table] = (columns, indexes, keys)
    return layout


async def _bodies(count: int) -> list[tuple[str, bytes]]:
    """Real envelopes for job type procs.upgrade, made by the public API on the memory backend."""
    async with JobQueue(MemoryBackend(), sinks=[]) as queue:
        jobs = [await queue.enqueue("procs.upgrade", {"n": n}) for n in range(count)]
        bodies = []
        for job in jobs:
            record = await queue.backend.get(job.id)
            assert record is not None
            bodies.append((job.id, record.body))
        return bodies


@run_async()
async def test_a_version_1_database_is_upgraded_in_place_and_its_jobs_run(tmp_path: Path) -> None:
    old = tmp_path / "v1.db"
    now = time.time()
    bodies = await _bodies(4)
    with sqlite3.connect(old) as connection:
        connection.executescript(V1_SCHEMA)
        rows = [
            (bodies[0], "pending", 0, None, None),
            (bodies[1], "scheduled", 0, None, None),
            (bodies[2], "active", 1, now - 5, "token-of-a-worker-that-died"),  # its lease expired
            (bodies[3], "completed", 1, None, None),
        ]
        for (job_id, body), status, attempts, lease_until, token in rows:
            connection.execute(
                "INSERT INTO lssm_jobs (id, type, status, attempts, run_at, created_at, updated_at, lease_until, "
                "lease_token, body) VALUES (?, 'procs.upgrade', ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, status, attempts, now - 10, now - 10, now - 1, lease_until, token, body),
            )
        connection.execute(
            "INSERT INTO lssm_dead_letters VALUES ('dead-1', 'procs.upgrade', 'default', 0, ?, ?, NULL, 3, "
            "'failed after 3 attempts', 'E', 'TB', ?, ?)",
            (now, now, now, b"\xffverbatim"),
        )

    fresh = tmp_path / "fresh.db"
    async with opened(SqliteBackend(fresh)):
        pass
    async with opened(SqliteBackend(old)) as backend:
        assert await _status(backend, bodies[3][0]) is JobStatus.COMPLETED
        dead = await backend.get_dead("dead-1")
        assert dead is not None and dead.body == b"\xffverbatim"
    assert _layout(old) == _layout(fresh)  # the migration produces exactly what the entity specs create
    expiry = _layout(fresh)["lssm_jobs"][1]["lssm_jobs_lease_expiry_idx"]
    assert expiry == ([("status", 0), ("lease_until", 0)], 0, 1, "\"status\" = 'active'")  # sees the WHERE
    with sqlite3.connect(old) as connection:
        assert schema_version(connection) == JOBS_SCHEMA_VERSION
        versions = connection.execute("SELECT version FROM lssm_schema_version ORDER BY version").fetchall()
        assert versions == [(version,) for version in range(1, JOBS_SCHEMA_VERSION + 1)]
        finished = connection.execute(
            "SELECT finished_at FROM lssm_jobs WHERE id = ?", (bodies[3][0],)
        ).fetchone()
        assert finished == (pytest.approx(now - 1),)

    ran: list[tuple[str, int]] = []
    async with open_queue("sqlite", path=old, sinks=[], poll_interval=0.05) as queue:
        queue.register("procs.upgrade", lambda job: ran.append((job.id, job.attempt)))
        await queue.start()
        await wait_until(lambda: len(ran) == 3, message="the three unfinished v1 jobs ran")

        async def completed() -> bool:
            jobs = [await queue.get(job_id) for job_id, _ in bodies[:3]]
            return all(job is not None and job.status is JobStatus.COMPLETED for job in jobs)

        await wait_until(completed, message="the three jobs are completed")
    assert sorted(ran) == sorted([(bodies[0][0], 1), (bodies[1][0], 1), (bodies[2][0], 2)])


@run_async()
async def test_the_backends_queries_stay_on_indexes_and_read_the_partial_ones(database: Path) -> None:
    """Every statement on lssm_jobs the backend runs to push (with a dedupe key, and in a batch), lease (with
    its promotion, reclaim, prune and sweep), ack and prune is an index search, never a scan; and the partial
    indexes serve the queries they exist for (sqlite uses one only when the query implies its predicate)."""
    statements: list[str] = []
    backend = SqliteBackend(database, prune_interval=3600)
    backend.push_on_loop = False  # every statement on the database thread's connection, which is traced
    async with opened(backend):
        await backend.run_in_connection(lambda connection: connection.set_trace_callback(statements.append))
        await backend.push([_job(dedupe_key="k")])
        await backend.push([_job(run_at=time.time() + 3600), _job(), _job()])
        deliveries = await backend.lease(queues=None, limit=5, lease_ms=30_000, wait=0)  # prunes, sweeps
        assert len(deliveries) == 3
        await asyncio.gather(*(delivery.ack() for delivery in deliveries))
        assert await backend.lease(queues=["default"], limit=5, lease_ms=30_000, wait=0) == []  # next due
        await backend.prune()
        await backend.run_in_connection(lambda connection: connection.set_trace_callback(None))

        def plans(connection: sqlite3.Connection) -> dict[str, str]:
            found = {}
            for sql in statements:
                if "lssm_jobs" in sql and sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                    rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
                    found[sql] = " | ".join(row[3] for row in rows)
            return found

        found = await backend.run_in_connection(plans)
    assert len(found) >= 10, found
    # each condition a partial index exists for is answered by that index
    served_by = {
        "status = 'scheduled' AND run_at": "lssm_jobs_due_idx",
        "status = 'active' AND lease_until": "lssm_jobs_lease_expiry_idx",
        "dedupe_key = ": "lssm_jobs_dedupe_idx",
        "('completed', 'cancelled') AND finished_at": "lssm_jobs_retention_idx",  # prune and sweep
        "AND finished_at IS NULL": "lssm_jobs_retention_idx",  # the sweep
    }
    for sql, plan in found.items():
        assert "SCAN lssm_jobs" not in plan, f"{sql}\n  -> {plan}"
        for condition, index in served_by.items():
            if condition in sql:
                assert f"INDEX {index} " in plan, f"{sql}\n  -> {plan}"
    every_statement = " ".join(found)
    assert all(condition in every_statement for condition in served_by), every_statement


@run_async()
async def test_a_newer_schema_is_refused(database: Path) -> None:
    async with opened(SqliteBackend(database)):
        pass
    _sql(database, "INSERT INTO lssm_schema_version VALUES (99, 0, 'from the future')")
    with pytest.raises(SchemaVersionError, match=f"schema version 99, newer than the version {JOBS_SCHEMA_VERSION}"):
        await SqliteBackend(database).open()


# -- several processes -------------------------------------------------------------------------------------


class _Processes:
    """Starts the helper processes of tests/sqlite_procs.py; kills whatever is left at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.directory / f"proc-{len(self.started)}.log").open("wb")
        process = subprocess.Popen([sys.executable, str(PROCS), *args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.started.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.directory.glob("proc-*.log"))
        )

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout)

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[_Processes]:
    manager = _Processes(tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.mark.slow
@run_async(timeout=90)
async def test_sigkilled_worker_job_completes_on_another_worker(
    tmp_path: Path, database: Path, processes: _Processes
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    async with opened(SqliteBackend(database)) as backend:
        async with JobQueue(SqliteBackend(database), sinks=[]) as producer:
            job = await producer.enqueue("procs.crash_once", {})
        doomed = processes.start("worker", str(database), str(runs), "--name", "doomed", "--lease-ms", "600")
        try:
            await wait_until(
                lambda: list(runs.glob(f"started.{job.id}.doomed.1")),
                timeout=30,
                message="the first worker started the job",
            )
        except TimeoutError:
            raise AssertionError(processes.logs()) from None
        os.kill(doomed.pid, signal.SIGKILL)
        assert doomed.wait(10) == -signal.SIGKILL
        record = await backend.get(job.id)
        assert record is not None and record.status is JobStatus.ACTIVE and record.attempts == 1
        killed_at = time.time()

        rescuer = processes.start(
            "worker", str(database), str(runs), "--name", "rescuer", "--lease-ms", "600"
        )
        try:
            await wait_until(
                lambda: _completed(backend, job.id), timeout=30, message="another worker completed the job"
            )
        except TimeoutError:
            raise AssertionError(processes.logs()) from None
        record = await backend.get(job.id)
        assert record is not None and record.attempts == 2
        assert record.updated_at >= killed_at
        assert processes.stop(rescuer) == 0, processes.logs()
    assert sorted(path.name for path in runs.iterdir()) == sorted(
        [f"started.{job.id}.doomed.1", f"started.{job.id}.rescuer.2", f"done.{job.id}.rescuer.2"]
    )


@pytest.mark.slow
@run_async(timeout=120)
async def test_two_producers_and_two_workers_on_one_file_run_every_job_exactly_once(
    tmp_path: Path, database: Path, processes: _Processes
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    per_producer = 150
    workers = [
        processes.start("worker", str(database), str(runs), "--name", name, "--concurrency", "4")
        for name in ("w1", "w2")
    ]
    producers = [
        processes.start("produce", str(database), "--name", name, "--count", str(per_producer))
        for name in ("p1", "p2")
    ]
    total = 2 * per_producer
    try:
        await wait_until(
            lambda: len(list(runs.iterdir())) >= total, timeout=60, interval=0.1, message=f"{total} jobs ran"
        )
    except TimeoutError:
        raise AssertionError(f"{len(list(runs.iterdir()))} runs; {processes.logs()}") from None
    for producer in producers:
        assert producer.wait(30) == 0, processes.logs()
    for worker in workers:  # a graceful stop: anything still running finishes and is counted
        assert processes.stop(worker) == 0, processes.logs()

    names = [path.name.split(".") for path in runs.iterdir()]
    labels = Counter(name[0] for name in names)
    expected = {f"{p}-{n}" for p in ("p1", "p2") for n in range(per_producer)}
    assert set(labels) == expected
    assert [label for label, count in labels.items() if count != 1] == []  # exactly once
    assert {name[3] for name in names} == {"1"}  # nobody's lease was lost
    by_worker = Counter(name[2] for name in names)
    assert set(by_worker) <= {"w1", "w2"}
    async with opened(SqliteBackend(database)) as backend:
        assert await backend.counts() == {"default": {JobStatus.COMPLETED: total}}


_OPEN_AT = """
import sys, time
from lssm_jobs.backends.sqlite_connection import connect
from lssm_jobs.backends.sqlite_schema import ensure_schema
start = float(sys.argv[2])
while time.time() < start:  # every process opens at the same instant
    pass
ensure_schema(connect(sys.argv[1]))
"""


@pytest.mark.integration
def test_processes_opening_a_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """A worker and a web app started together on a file that does not exist yet: every process opens it
    (sqlite refuses the switch to WAL at once while another connection holds a lock, without waiting on the
    busy timeout; connect retries it)."""
    for round_ in range(10):
        database = tmp_path / f"jobs-{round_}.db"
        start = time.time() + 0.5
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT, str(database), str(start)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for process in processes:
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, stderr
        reader = sqlite3.connect(database)
        try:
            assert schema_version(reader) == JOBS_SCHEMA_VERSION
        finally:
            reader.close()
