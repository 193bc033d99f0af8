"""The scheduler store contract over the built-in stores (memory, sqlite), plus how JobScheduler picks one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from lssm_jobs.errors import PluginNotFoundError
from lssm_jobs.queue import MemoryJobQueue, open_queue
from lssm_jobs.scheduler import JobScheduler, MemorySchedulerStore, SchedulerStore, SqliteSchedulerStore
from lssm_jobs.scheduler.memory_store import MemorySchedulerData
from lssm_jobs.testing import SchedulerStoreContract
from lssm_jobs.testing.helpers import run_async


class TestMemorySchedulerStore(SchedulerStoreContract):
    @pytest.fixture
    def lssm_jobs_scheduler_store_factory(self) -> Callable[[], SchedulerStore]:
        data = MemorySchedulerData()
        return lambda: MemorySchedulerStore(data)


class TestSqliteSchedulerStore(SchedulerStoreContract):
    @pytest.fixture
    def lssm_jobs_scheduler_store_factory(self, tmp_path: Path) -> Callable[[], SchedulerStore]:
        path = tmp_path / "scheduler.db"
        return lambda: SqliteSchedulerStore(path)


def test_a_memory_queue_gets_the_memory_store_shared_by_its_schedulers() -> None:
    queue = MemoryJobQueue()
    first, second = JobScheduler(queue), JobScheduler(queue)
    assert isinstance(first.store, MemorySchedulerStore)
    assert isinstance(second.store, MemorySchedulerStore)
    assert first.store.data is second.store.data
    other = JobScheduler(MemoryJobQueue())
    assert isinstance(other.store, MemorySchedulerStore)
    assert other.store.data is not first.store.data


@run_async()
async def test_a_sqlite_queue_gets_the_sqlite_store_in_its_own_file(tmp_path: Path) -> None:
    queue = open_queue("sqlite", path=str(tmp_path / "jobs.db"))
    scheduler = JobScheduler(queue)
    assert isinstance(scheduler.store, SqliteSchedulerStore)
    assert scheduler.store.path == tmp_path / "jobs.db"
    await scheduler.store.open()
    try:
        await scheduler.store.ensure("probe", now=1.0)
    finally:
        await scheduler.store.close()
    await queue.open()  # the queue opens the file the store already prepared: one schema, one file
    try:
        assert await queue.counts() == {}
    finally:
        await queue.close()


def test_stores_by_name_and_unknown_names(tmp_path: Path) -> None:
    queue = open_queue("sqlite", path=str(tmp_path / "jobs.db"))
    assert isinstance(JobScheduler(queue, store="memory").store, MemorySchedulerStore)
    explicit = SqliteSchedulerStore(tmp_path / "other.db")
    assert JobScheduler(queue, store=explicit).store is explicit
    with pytest.raises(PluginNotFoundError, match="nope"):
        JobScheduler(queue, store="nope")


@run_async()
async def test_sqlite_claim_scans_read_the_state_index(tmp_path: Path) -> None:
    """Finding unfinished claims and pruning must not walk a table holding a day of every-second claims."""
    store = SqliteSchedulerStore(tmp_path / "scheduler.db")
    await store.open()
    await store.close()
    connection = sqlite3.connect(tmp_path / "scheduler.db")

    def plan(sql: str) -> str:
        return " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", (1.0,)))

    try:
        unfinished = plan(
            "SELECT * FROM lssm_schedule_claims WHERE completed_at IS NULL ORDER BY claimed_at, schedule, tick "
            "LIMIT ?"
        )
        assert "lssm_schedule_claims_state_idx" in unfinished, unfinished
        finished = plan("DELETE FROM lssm_schedule_claims WHERE completed_at < ?")
        assert "lssm_schedule_claims_state_idx" in finished, finished
        abandoned = plan("DELETE FROM lssm_schedule_claims WHERE completed_at IS NULL AND claimed_at < ?")
        assert "lssm_schedule_claims_state_idx" in abandoned, abandoned
    finally:
        connection.close()
