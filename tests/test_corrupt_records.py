"""A stored record that cannot be read goes to the dead letter queue with a reason and never affects the
other jobs of its batch; every read (lease, get, counts, list_dead, get_dead, replay, purge) copes with any
value in any column. The sqlite rows are corrupted the way the sqlite shell would (an ``UPDATE`` through
the sqlite3 module, so each column gets TEXT, INTEGER, REAL, NULL, BLOB or invalid UTF-8); the memory store
gets bodies that are not bytes."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.backends.memory import MemoryStore
from lssm_jobs.errors import SerializationError
from lssm_jobs.jobs import Job, JobCatalog, JobStatus
from lssm_jobs.queue import JobQueue, MemoryJobQueue, open_queue
from lssm_jobs.testing import run_async, wait_until

JOB_COLUMNS = (
    "id",
    "type",
    "queue",
    "status",
    "attempts",
    "priority",
    "run_at",
    "created_at",
    "updated_at",
    "dedupe_key",
    "last_error",
    "lease_until",
    "lease_token",
    "finished_at",
    "body",
)
DEAD_COLUMNS = (
    "id",
    "type",
    "queue",
    "priority",
    "run_at",
    "created_at",
    "dedupe_key",
    "attempts",
    "reason",
    "error",
    "traceback",
    "failed_at",
    "body",
)
# What an UPDATE from the sqlite shell can leave in a column (as SQL, so invalid UTF-8 TEXT is possible).
VALUES = {
    "text": "'garbage'",
    "integer": "7",
    "real": "2.5",
    "null": "NULL",
    "blob": "x'ff00'",
    "bad-utf8": "CAST(x'ff41' AS TEXT)",
}
LIVE = (JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.ACTIVE)


def _sqlite_queue(path: Path, **options: Any) -> JobQueue:
    settings: dict[str, Any] = {
        "sinks": [],
        "catalog": JobCatalog(),
        "poll_interval": 0.05,
        "lease_ms": 2_000,
        "concurrency": 20,
        "prune_interval": 0.05,  # the sweep for rows no lease picks runs with pruning
        **options,
    }
    return open_queue("sqlite", path=path, **settings)


def _corrupt(path: Path, table: str, column: str, value: str, job_id: str) -> bool:
    """Write ``value`` (SQL) into one row's column; False when sqlite refuses it (a NOT NULL column)."""
    with sqlite3.connect(path) as connection:
        try:
            connection.execute(f'UPDATE {table} SET "{column}" = {value} WHERE id = ?', (job_id,))
        except sqlite3.IntegrityError:
            return False
    return True


def _total(counts: dict[str, dict[JobStatus, int]], *statuses: JobStatus) -> int:
    return sum(per.get(status, 0) for per in counts.values() for status in statuses)


async def _reads_never_fail(queue: JobQueue, job_ids: list[str]) -> None:
    """Every read works, or (``get`` of a corrupt job) says the record is corrupt."""
    await queue.counts()
    for job_id in job_ids:
        try:
            await queue.get(job_id)
        except SerializationError as error:
            assert "corrupt" in str(error) or "envelope" in str(error) or "JSON" in str(error), error
    for letter in await queue.dead_letters.list(limit=1000):
        assert isinstance(letter.body, bytes) and letter.reason
        assert (await queue.dead_letters.get(letter.id)) is not None, letter.id


async def _drained(queue: JobQueue) -> dict[str, dict[JobStatus, int]]:
    async def settled() -> dict[str, dict[JobStatus, int]] | None:
        counts = await queue.counts()
        return None if _total(counts, *LIVE) else counts

    result: dict[str, dict[JobStatus, int]] = await wait_until(
        settled, timeout=30, interval=0.05, message="no job left live"
    )
    return result


@pytest.mark.slow
@pytest.mark.parametrize("value", list(VALUES))
@run_async(timeout=120)
async def test_any_value_in_any_job_column(value: str, tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    runs: Counter[Any] = Counter()
    async with _sqlite_queue(path) as queue:
        queue.register("work", lambda job: runs.update([job.payload["n"]]))
        healthy = [await queue.enqueue("work", {"n": n}) for n in range(10)]
        # One victim per column, each corrupted in that column only; all leased in one batch with the
        # healthy jobs.
        victims: dict[str, Job[Any]] = {}
        for column in JOB_COLUMNS:
            victim = await queue.enqueue("work", {"n": f"victim {column}"})
            if _corrupt(path, "lssm_jobs", column, VALUES[value], victim.id):
                victims[column] = victim
        ids = [job.id for job in [*healthy, *victims.values()]]
        await _reads_never_fail(queue, ids)

        await queue.start()
        counts = await _drained(queue)
        await queue.stop()
        await _reads_never_fail(queue, ids)
        # Every healthy job ran exactly once, none was held back by its batch; nothing was lost.
        assert all(runs[n] == 1 for n in range(10)), runs
        assert _total(counts, JobStatus.COMPLETED, JobStatus.DEAD) == len(healthy) + len(JOB_COLUMNS)
        for letter in await queue.dead_letters.list(limit=1000):
            assert letter.reason.startswith(("corrupt record:", "undecodable envelope", "delivered")), letter
            if letter.reason.startswith("corrupt record:"):
                assert "column" in letter.reason or "status" in letter.reason

        # Every dead letter can be replayed, and becomes a job that runs or dies again for a reason of its
        # own: no record written back by a replay is corrupt.
        for letter in await queue.dead_letters.list(limit=1000):
            assert await queue.dead_letters.replay(letter.id)
        await queue.start()
        await _drained(queue)
        await queue.stop()
        for letter in await queue.dead_letters.list(limit=1000):
            assert not letter.reason.startswith("corrupt record"), letter
        await _reads_never_fail(queue, ids)


@run_async()
async def test_a_text_body_leased_with_healthy_jobs_is_dead_lettered_and_they_run_once(
    tmp_path: Path,
) -> None:
    """The report: a body changed to TEXT from the sqlite shell made every lease of its batch fail after it
    committed, so the healthy jobs leased with it were leased again and again, and dead-lettered as poison
    jobs that never ran."""
    path = tmp_path / "jobs.db"
    attempts: dict[str, int] = {}
    async with _sqlite_queue(path) as queue:
        queue.register("work", lambda job: attempts.setdefault(job.id, job.attempt))
        healthy = [await queue.enqueue("work", {"n": n}) for n in range(8)]
        victim = await queue.enqueue("work", {"n": "victim"})
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE lssm_jobs SET body = CAST(body AS TEXT) WHERE id = ?", (victim.id,))
        await queue.start()
        await wait_until(lambda: len(attempts) == len(healthy), message="the healthy jobs ran")
        dead = await wait_until(lambda: queue.dead_letters.get(victim.id), message="the victim dead")
        await queue.stop()
    assert attempts == {job.id: 1 for job in healthy}
    assert dead.reason.startswith("corrupt record: column 'body' holds TEXT")
    assert dead.body.startswith(b"{") and b'"victim"' in dead.body  # the text kept byte for byte
    async with _sqlite_queue(path) as queue:  # replayed after the fix, it runs
        ran: list[str] = []
        queue.register("work", lambda job: ran.append(job.payload["n"]))
        assert await queue.dead_letters.replay(victim.id)
        await queue.start()
        await wait_until(lambda: ran == ["victim"], message="the replayed job ran")


@run_async()
async def test_rows_no_lease_would_pick_are_swept(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    ran: list[str] = []
    async with _sqlite_queue(path) as queue:
        queue.register("work", lambda job: ran.append(job.payload["n"]))
        scheduled = await queue.enqueue("work", {"n": "scheduled"}, delay_ms=3_600_000)
        unknown = await queue.enqueue("work", {"n": "unknown status"})
        blob_queue = await queue.enqueue("work", {"n": "blob queue"}, queue="reports")
        stuck = await queue.enqueue("work", {"n": "stuck lease"})
        done = await queue.enqueue("work", {"n": "done"})
        cancelled = await queue.enqueue("work", {"n": "cancelled"})
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE lssm_jobs SET run_at = 'tomorrow' WHERE id = ?", (scheduled.id,))
            connection.execute("UPDATE lssm_jobs SET status = 'paused' WHERE id = ?", (unknown.id,))
            connection.execute("UPDATE lssm_jobs SET queue = x'7265' WHERE id = ?", (blob_queue.id,))
            # A lease without an expiry (left by hand), and a completed job without a finish time: neither
            # would ever expire.
            connection.execute(
                "UPDATE lssm_jobs SET status = 'active', lease_until = NULL, lease_token = 'x', attempts = 1 "
                "WHERE id = ?",
                (stuck.id,),
            )
            connection.execute(
                "UPDATE lssm_jobs SET status = 'completed', finished_at = 'never' WHERE id = ?", (done.id,)
            )
            connection.execute(  # a cancelled job without a finish time, likewise
                "UPDATE lssm_jobs SET status = 'cancelled', finished_at = NULL WHERE id = ?", (cancelled.id,)
            )
        counts = await queue.counts()  # an unknown status is logged and left out, never an error
        assert _total(counts, *JobStatus) == 4  # nor is a finished job without a finish time
        await queue.start()
        for job in (scheduled, unknown, blob_queue):
            await wait_until(lambda job=job: queue.dead_letters.get(job.id), message=f"{job.payload} swept")
        await wait_until(lambda: "stuck lease" in ran, message="the stuck lease reclaimed and run")
        await wait_until(lambda: _gone(queue, done.id), message="the unexpiring completed job deleted")
        await wait_until(lambda: _gone(queue, cancelled.id), message="the unexpiring cancelled job deleted")
        await queue.stop()
        reasons = {letter.id: letter.reason for letter in await queue.dead_letters.list()}
    assert reasons[scheduled.id] == (
        "corrupt record: column 'run_at' holds TEXT 'tomorrow' (changed outside lssm-jobs?)"
    )
    assert reasons[unknown.id] == "corrupt record: unknown status 'paused' (changed outside lssm-jobs?)"
    assert reasons[blob_queue.id].startswith("corrupt record: column 'queue' holds BLOB")
    assert ran == ["stuck lease"]


@run_async()
async def test_the_sweep_leaves_cancelled_jobs_alone(tmp_path: Path) -> None:
    """'cancelled' is a known status: the sweep must not take a cancelled job for a corrupt row (it once
    moved every cancelled job to the dead letter queue as "unreadable row")."""
    path = tmp_path / "jobs.db"
    async with _sqlite_queue(path) as queue:
        queue.register("work", lambda job: None)
        job = await queue.enqueue("work", {"n": "cancelled"})
        assert await queue.cancel(job.id) == "removed"
        done = await queue.enqueue("work", {"n": "runs"})
        await queue.start()  # its first lease prunes and sweeps
        await wait_until(lambda: _status(queue, done.id, JobStatus.COMPLETED), message="the other job ran")
        await queue.stop()
        record = await queue.get(job.id)
        assert record is not None and record.status is JobStatus.CANCELLED
        assert await queue.dead_letters.list() == []


async def _status(queue: JobQueue, job_id: str, status: JobStatus) -> bool:
    record = await queue.get(job_id)
    return record is not None and record.status is status


async def _gone(queue: JobQueue, job_id: str) -> bool:
    return await queue.get(job_id) is None


@pytest.mark.slow
@pytest.mark.parametrize("value", list(VALUES))
@run_async(timeout=120)
async def test_any_value_in_any_dead_letter_column(value: str, tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    def fails(job: Job[Any]) -> None:
        raise RuntimeError("down")

    async with _sqlite_queue(path) as queue:
        queue.register("work", fails)
        jobs = [await queue.enqueue("work", {"n": column}, max_retries=0) for column in DEAD_COLUMNS]
        await queue.start()
        for job in jobs:
            await wait_until(lambda job=job: queue.dead_letters.get(job.id), message="dead")
        await queue.stop()
        for column, job in zip(DEAD_COLUMNS, jobs, strict=True):
            _corrupt(path, "lssm_dead_letters", column, VALUES[value], job.id)
        letters = await queue.dead_letters.list(limit=100)
        assert len(letters) == len(jobs)
        await _reads_never_fail(queue, [letter.id for letter in letters])
        for letter in letters:
            assert isinstance(letter.id, str) and isinstance(letter.failed_at, float)
            assert isinstance(letter.attempts, int) and isinstance(letter.queue, str)
        # Each one can be replayed (into a well-formed job), or purged, by the id it is listed with.
        replayed = letters[: len(letters) // 2]
        for letter in replayed:
            assert await queue.dead_letters.replay(letter.id), letter
        assert await queue.dead_letters.purge([letter.id for letter in letters[len(letters) // 2 :]]) == len(
            letters
        ) - len(replayed)
        await _reads_never_fail(queue, [letter.id for letter in replayed])
        queue.handlers["work"] = lambda job: None
        await queue.start()
        counts = await _drained(queue)
        await queue.stop()
    assert _total(counts, JobStatus.COMPLETED, JobStatus.DEAD) == len(replayed)


@run_async()
async def test_memory_records_that_are_not_bytes_are_dead_lettered_alone() -> None:
    store = MemoryStore()
    ran: list[int] = []
    async with MemoryJobQueue(store=store, sinks=[], catalog=JobCatalog(), poll_interval=0.05) as queue:
        queue.register("work", lambda job: ran.append(job.payload["n"]))
        healthy = [await queue.enqueue("work", {"n": n}) for n in range(5)]
        victims = [await queue.enqueue("work", {"n": -1}) for _ in range(3)]
        for victim, body in zip(victims, ["text", None, 12], strict=True):
            store.jobs[victim.id].body = body  # type: ignore[assignment]
        for victim in victims:
            with pytest.raises(SerializationError):
                await queue.get(victim.id)
        await queue.start()
        for victim in victims:
            await wait_until(lambda victim=victim: queue.dead_letters.get(victim.id), message="dead")
        await wait_until(lambda: len(ran) == len(healthy), message="the healthy jobs ran")
        letters = {letter.id: letter for letter in await queue.dead_letters.list()}
    assert sorted(ran) == list(range(5))
    for victim in victims:
        letter = letters[victim.id]
        assert letter.reason.startswith("undecodable envelope (json): an envelope must be bytes")
        assert isinstance(letter.body, bytes)
