"""Small pushes written on the event loop's thread when the write lock is free (sqlite_loop_push), and the
database thread otherwise: while another connection writes, with ``synchronous="full"``, and for batches."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from lssm_jobs.backends import sqlite_loop_push
from lssm_jobs.backends.base import PushResult
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.backends.sqlite_connection import connect, is_busy
from lssm_jobs.backends.sqlite_loop_push import MAX_JOBS
from lssm_jobs.jobs import JobStatus
from lssm_jobs.testing import opened, run_async
from lssm_jobs.testing.helpers import raw_job


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


class _BusyDatabaseThread:
    """Keeps the backend's database thread busy (reading nothing, holding no lock) until released."""

    def __init__(self, backend: SqliteBackend) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.task = asyncio.ensure_future(backend.run_in_connection(self._hold))

    def _hold(self, connection: sqlite3.Connection) -> None:
        self.entered.set()
        self.release.wait(30)

    async def __aenter__(self) -> _BusyDatabaseThread:
        while not self.entered.is_set():
            await asyncio.sleep(0.001)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.task


async def _push(backend: SqliteBackend, count: int) -> list[PushResult]:
    return await backend.push([raw_job() for _ in range(count)])


def _file_size(path: Path) -> int:
    return path.stat().st_size


async def _done_while_the_database_thread_is_busy(backend: SqliteBackend, count: int) -> bool:
    """Push ``count`` jobs while the database thread is held; whether the push finished before release."""
    async with _BusyDatabaseThread(backend):
        push = asyncio.create_task(_push(backend, count))
        for _ in range(50):  # the loop path finishes in the first step; give the thread path a fair chance
            await asyncio.sleep(0)
        finished = push.done()
    results = await push
    assert len(results) == count and all(result.created for result in results)
    return finished


@run_async()
async def test_a_single_push_is_written_on_the_loop_thread_when_the_lock_is_free(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        assert await _done_while_the_database_thread_is_busy(backend, 1)
        assert await _done_while_the_database_thread_is_busy(backend, MAX_JOBS)
        assert (await backend.counts())["default"][JobStatus.PENDING] == 1 + MAX_JOBS


@run_async()
async def test_batches_full_durability_and_the_switch_use_the_database_thread(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        assert not await _done_while_the_database_thread_is_busy(backend, MAX_JOBS + 1)
    async with opened(SqliteBackend(database, synchronous="full")) as backend:
        assert not await _done_while_the_database_thread_is_busy(backend, 1)
    backend = SqliteBackend(database)
    backend.push_on_loop = False
    async with opened(backend):
        assert not await _done_while_the_database_thread_is_busy(backend, 1)


@run_async()
async def test_a_push_while_another_connection_writes_waits_on_the_database_thread(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        other = connect(database, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
        try:
            job = raw_job()
            push = asyncio.ensure_future(backend.push([job]))
            ticks = 0
            while ticks < 20:  # the loop keeps running while the push waits for the lock
                await asyncio.sleep(0.001)
                ticks += 1
            assert not push.done()
        finally:
            other.execute("COMMIT")
            other.close()
        [result] = await push
        assert result.created and result.id == job.id
        record = await backend.get(job.id)
        assert record is not None and record.status is JobStatus.PENDING
        assert (await backend.counts())["default"][JobStatus.PENDING] == 1  # stored once


@run_async()
async def test_a_rejected_push_on_the_loop_is_rolled_back_and_raised(database: Path) -> None:
    async with opened(SqliteBackend(database)) as backend:
        await backend.run_in_connection(
            lambda db: db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON lssm_jobs WHEN NEW.type = 'refused' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
            )
        )
        with pytest.raises(sqlite3.IntegrityError, match="refused by a trigger"):
            await backend.push([raw_job(type="refused")])
        [result] = await backend.push([raw_job()])  # the loop connection is usable again
        assert result.created
        assert (await backend.counts())["default"][JobStatus.PENDING] == 1


@run_async()
async def test_commits_on_the_loop_are_checkpointed_by_the_database_thread(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_loop_push, "CHECKPOINT_EVERY", 20)
    async with opened(SqliteBackend(database)) as backend:
        size_before = _file_size(database)
        for _ in range(200):
            await backend.push([raw_job(body=b"x" * 2_000)])
        # The loop connection never checkpoints (wal_autocheckpoint 0); the database thread was asked to.
        deadline = asyncio.get_running_loop().time() + 10
        while _file_size(database) <= size_before + 100_000:
            assert asyncio.get_running_loop().time() < deadline, "the WAL was never copied into the file"
            await asyncio.sleep(0.01)


def test_busy_errors_are_recognised_by_code_and_by_message(database: Path) -> None:
    holder = connect(database)
    holder.execute("BEGIN IMMEDIATE")
    waiter = connect(database, busy_timeout=0.0)
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            waiter.execute("BEGIN IMMEDIATE")
        assert is_busy(raised.value)
        assert is_busy(sqlite3.OperationalError("database is locked"))
        assert not is_busy(sqlite3.OperationalError("no such table: nowhere"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        waiter.close()
