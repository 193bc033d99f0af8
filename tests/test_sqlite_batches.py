"""The sqlite backend's batched paths: a batch push through one ``executemany`` (falling back job by job
when some id was stored before), settles committed together (group commit), and the blocking facade's
push on the calling thread."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import pytest
from lssm_jobs.backends.base import Delivery, OutgoingJob
from lssm_jobs.backends.sqlite import _INSERT_JOB, SqliteBackend
from lssm_jobs.backends.sqlite_connection import connect
from lssm_jobs.backends.sqlite_schema import ensure_schema
from lssm_jobs.blocking import open_blocking_queue
from lssm_jobs.errors import QueueClosedError
from lssm_jobs.jobs import JobStatus
from lssm_jobs.testing import opened, run_async


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


def _job(job_id: str | None = None, dedupe_key: str | None = None) -> OutgoingJob:
    now = time.time()
    return OutgoingJob(
        id=job_id or uuid.uuid4().hex,
        type="t",
        queue="default",
        priority=0,
        run_at=now,
        created_at=now,
        dedupe_key=dedupe_key,
        body=b"{}",
    )


@run_async()
async def test_a_batch_with_ids_stored_before_reports_each_job(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        first, doomed = _job(), _job()
        assert [r.created for r in await backend.push([first, doomed])] == [True, True]
        (leased,) = [
            d for d in await backend.lease(queues=None, limit=2, lease_ms=30_000, wait=0) if d.id == doomed.id
        ]
        await leased.dead_letter(reason="test", error=None, traceback=None)
        fresh = [_job() for _ in range(3)]
        results = await backend.push([fresh[0], first, fresh[1], doomed, fresh[2]])
        assert [(r.id, r.created) for r in results] == [
            (fresh[0].id, True),
            (first.id, False),  # stored already
            (fresh[1].id, True),
            (doomed.id, False),  # pushed before, and died
            (fresh[2].id, True),
        ]
        assert (await backend.counts())["default"][JobStatus.PENDING] == 3  # `first` is leased
        # No dead letter among them, one id stored before: the batch insert stores fewer rows than pushed,
        # rolls back and goes job by job.
        again = _job()
        results = await backend.push([again, fresh[1]])
        assert [(r.id, r.created) for r in results] == [(again.id, True), (fresh[1].id, False)]
        assert (await backend.counts())["default"][JobStatus.PENDING] == 4
        batch = [_job() for _ in range(50)]
        assert all(r.created for r in await backend.push(batch))
        assert (await backend.counts())["default"][JobStatus.PENDING] == 54


@run_async()
async def test_settles_finishing_together_commit_in_few_transactions(database: Path) -> None:
    statements: list[str] = []
    async with opened(SqliteBackend(database)) as backend:
        await backend.push([_job() for _ in range(60)])
        deliveries: list[Delivery] = await backend.lease(queues=None, limit=60, lease_ms=30_000, wait=0)
        assert len(deliveries) == 60
        await backend.run_in_connection(lambda connection: connection.set_trace_callback(statements.append))
        retried, dead, released = deliveries[0], deliveries[1], deliveries[2]
        await asyncio.gather(
            *(delivery.ack() for delivery in deliveries[3:]),
            retried.retry(run_at=time.time() + 3600, error="boom"),
            dead.dead_letter(reason="failed", error="E", traceback=None),
            released.release(),
        )
        await backend.run_in_connection(lambda connection: connection.set_trace_callback(None))
        counts = (await backend.counts())["default"]
        assert counts[JobStatus.COMPLETED] == 57 and counts[JobStatus.SCHEDULED] == 1
        assert counts[JobStatus.PENDING] == 1 and counts[JobStatus.DEAD] == 1
        transactions = statements.count("BEGIN IMMEDIATE")
        assert 1 <= transactions <= 3, statements  # the first settle alone, then the rest together
        # A settle carrying a lost lease still changes nothing inside a batch.
        await asyncio.gather(deliveries[5].ack(), retried.release())
        assert (await backend.counts())["default"][JobStatus.SCHEDULED] == 1


def test_the_blocking_facade_pushes_on_the_calling_thread_and_wakes_a_waiting_lease(database: Path) -> None:
    queue = open_blocking_queue("sqlite", path=database, sinks=[])
    try:
        pusher = queue._direct_pusher()
        assert pusher is not None  # no event loop round trip for enqueue
        leased: list[Delivery] = []

        async def consume() -> None:
            async with opened(SqliteBackend(database)) as consumer:
                leased.extend(await consumer.lease(queues=None, limit=1, lease_ms=30_000, wait=60))

        waiting = threading.Thread(target=asyncio.run, args=(consume(),))
        waiting.start()
        job = queue.enqueue("t", {"n": 1})
        waiting.join(30)
        assert not waiting.is_alive() and [d.id for d in leased] == [job.id]  # woken, not the 60 s wait
        assert queue.get(job.id) is not None
        threads = [threading.Thread(target=queue.enqueue, args=("t", {"n": n})) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert queue.counts()["default"][JobStatus.PENDING] == 4
    finally:
        queue.close()
    with pytest.raises(QueueClosedError):
        pusher([_job()])


@run_async()
async def test_a_closed_backend_refuses_blocking_pushes(database: Path) -> None:
    backend = SqliteBackend(database)
    assert backend.blocking_pusher() is None
    await backend.open()
    pusher = backend.blocking_pusher()
    assert pusher is not None
    await asyncio.to_thread(pusher, [_job()])
    await backend.close()
    with pytest.raises(QueueClosedError):
        pusher([_job()])


@run_async()
async def test_settles_waiting_for_the_group_commit_ride_along_with_the_next_lease(database: Path) -> None:
    statements: list[str] = []
    async with opened(SqliteBackend(database)) as backend:
        await backend.push([_job() for _ in range(10)])
        deliveries = await backend.lease(queues=None, limit=5, lease_ms=30_000, wait=0)
        await backend.run_in_connection(lambda connection: connection.set_trace_callback(statements.append))
        acks = [asyncio.ensure_future(delivery.ack()) for delivery in deliveries]
        await asyncio.sleep(0)  # every ack is waiting: the first one is committing, four wait for the next
        leased = await backend.lease(queues=None, limit=5, lease_ms=30_000, wait=0)
        await asyncio.gather(*acks)
        await backend.run_in_connection(lambda connection: connection.set_trace_callback(None))
        assert len(leased) == 5
        assert statements.count("BEGIN IMMEDIATE") == 2, statements  # the first ack; the lease with four
        counts = (await backend.counts())["default"]
        assert counts[JobStatus.COMPLETED] == 5 and counts[JobStatus.ACTIVE] == 5


def test_the_batch_insert_and_the_settles_use_the_primary_keys(database: Path) -> None:
    """The batch push looks up dead letters by their primary key and inserts without a scan, and every
    settle finds its job by id."""
    connection = connect(database)
    try:
        ensure_schema(connection)

        def plan(sql: str, parameters: tuple[object, ...] = ()) -> str:
            return " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters))

        dead = plan("SELECT 1 FROM lssm_dead_letters WHERE id IN ('a', 'b') LIMIT 1")
        assert "SEARCH lssm_dead_letters USING COVERING INDEX sqlite_autoindex_lssm_dead_letters_1" in dead, (
            dead
        )
        insert = plan(_INSERT_JOB, ("a", "t", "q", "pending", 0, 1.0, 1.0, 1.0, None, b""))
        assert "SCAN lssm_" not in insert, insert
        held = "id = 'x' AND lease_token = 't' AND status = 'active'"
        for settle in (
            f"UPDATE lssm_jobs SET status = 'completed', finished_at = 1 WHERE {held}",
            f"DELETE FROM lssm_jobs WHERE {held}",
            f"SELECT body FROM lssm_jobs WHERE {held}",
        ):
            assert "USING INDEX sqlite_autoindex_lssm_jobs_1 (id=?)" in plan(settle), plan(settle)
    finally:
        connection.close()


@run_async()
async def test_close_commits_the_settles_still_waiting(database: Path) -> None:
    backend = SqliteBackend(database)
    await backend.open()
    await backend.push([_job() for _ in range(6)])
    deliveries = await backend.lease(queues=None, limit=6, lease_ms=30_000, wait=0)
    acks = [asyncio.ensure_future(delivery.ack()) for delivery in deliveries]
    await asyncio.sleep(0)  # the first ack is committing, five wait for the next group commit
    await backend.close()
    await asyncio.gather(*acks)
    async with opened(SqliteBackend(database)) as reopened:
        assert (await reopened.counts())["default"] == {JobStatus.COMPLETED: 6}
