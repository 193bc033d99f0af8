"""The result store contract suite over the built-in stores, their registration, and what a queue does with
results beyond the backend conformance tests (a wrong store fails the suite; sqlite files upgrade)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from lssm_jobs import JobCatalog, MemoryJobQueue, define_job_type
from lssm_jobs.backends.memory import MemoryBackend
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.errors import PluginNotFoundError, ResultStoreUnavailableError
from lssm_jobs.plugins import get_plugins
from lssm_jobs.queue import JobQueue
from lssm_jobs.results import ResultStore, StoredResult
from lssm_jobs.results.memory import MemoryResultData, MemoryResultStore
from lssm_jobs.results.sqlite import SqliteResultStore
from lssm_jobs.testing import ResultStoreConformance, run_async


class TestMemoryResultStore(ResultStoreConformance):
    @pytest.fixture
    def lssm_jobs_result_store_factory(self) -> Callable[[], ResultStore]:
        data = MemoryResultData()
        return lambda: MemoryResultStore(data)


class TestSqliteResultStore(ResultStoreConformance):
    @pytest.fixture
    def lssm_jobs_result_store_factory(self, tmp_path: Path) -> Callable[[], ResultStore]:
        return lambda: SqliteResultStore(tmp_path / "results.db")


class _ForgetfulStore(MemoryResultStore):
    """A wrong store: it returns results past their expiry."""

    async def get(self, job_id: str, *, now: float) -> StoredResult | None:
        with self.data.lock:
            return self.data.results.get(job_id)


def test_the_suite_fails_a_store_that_returns_expired_results() -> None:
    data = MemoryResultData()
    suite = ResultStoreConformance()
    with pytest.raises(AssertionError):
        suite.test_an_expired_result_is_never_returned(lambda: _ForgetfulStore(data))


class _DeafStore(MemoryResultStore):
    """A wrong store: its wait never hears a put (it sleeps through its timeout, then looks once)."""

    async def wait(self, job_id: str, *, timeout: float) -> StoredResult | None:
        await asyncio.sleep(timeout)
        return await self.get(job_id, now=time.time())


def test_the_suite_fails_a_store_whose_waiters_sleep_through_a_put() -> None:
    data = MemoryResultData()
    suite = ResultStoreConformance()
    with pytest.raises((AssertionError, TimeoutError, asyncio.TimeoutError)):  # (two types on Python 3.10)
        suite.test_every_waiter_wakes_when_the_result_is_stored(lambda: _DeafStore(data))


def test_builtin_result_stores_are_registered_for_their_backends(tmp_path: Path) -> None:
    stores = get_plugins().result_stores()
    assert stores["memory"].backend == "memory" and stores["sqlite"].backend == "sqlite"
    assert isinstance(JobQueue(MemoryBackend(), sinks=[]).result_store, MemoryResultStore)
    sqlite_queue = JobQueue(SqliteBackend(tmp_path / "jobs.db"), sinks=[])
    assert isinstance(sqlite_queue.result_store, SqliteResultStore)
    assert sqlite_queue.result_store.path == tmp_path / "jobs.db"
    # another store by name, with options (what a Cloud Tasks or Pub/Sub queue does)
    elsewhere = JobQueue(
        MemoryBackend(), sinks=[], result_store="sqlite", result_store_options={"path": tmp_path / "r.db"}
    )
    assert isinstance(elsewhere.result_store, SqliteResultStore)
    assert elsewhere.result_store.path == tmp_path / "r.db"
    with pytest.raises(PluginNotFoundError, match="unknown result store 'nope'"):
        JobQueue(MemoryBackend(), sinks=[], result_store="nope")
    with pytest.raises(ValueError, match="result_ttl_ms"):
        JobQueue(MemoryBackend(), sinks=[], result_ttl_ms=0)


@run_async()
async def test_a_queue_without_a_result_store_says_so(tmp_path: Path) -> None:
    catalog = JobCatalog()
    typed = define_job_type(type="no.store", result=int, catalog=catalog)
    queue = MemoryJobQueue(catalog=catalog, sinks=[])
    queue.result_store = None  # as on a backend that registers no store (Cloud Tasks, Pub/Sub)
    async with queue:
        job = await queue.enqueue(typed, {})
        with pytest.raises(ResultStoreUnavailableError, match="no result store"):
            await job.wait(timeout=1)


@run_async()
async def test_jobs_without_a_result_type_write_nothing(tmp_path: Path) -> None:
    catalog = JobCatalog()
    silent = define_job_type(type="silent", catalog=catalog)
    typed = define_job_type(type="typed", result=str, catalog=catalog)
    queue = JobQueue(SqliteBackend(tmp_path / "jobs.db"), catalog=catalog, sinks=[], poll_interval=0.05)
    writes: list[str] = []
    store = queue.result_store
    assert store is not None
    original = store.put

    async def counting_put(result: StoredResult) -> None:
        writes.append(result.job_type)
        await original(result)

    store.put = counting_put  # type: ignore[method-assign]
    queue.register(silent, lambda job: "returned, not stored")
    queue.register(typed, lambda job: "stored")
    async with queue:
        await queue.start()
        jobs = [await queue.enqueue(silent, {}) for _ in range(5)]
        assert [await job.wait(timeout=10) for job in jobs] == [None] * 5
        assert await (await queue.enqueue(typed, {})).wait(timeout=10) == "stored"
    assert writes == ["typed"]


@run_async()
async def test_results_survive_reopening_a_sqlite_file(tmp_path: Path) -> None:
    catalog = JobCatalog()
    typed = define_job_type(type="durable.result", result=dict[str, int], catalog=catalog)
    path = tmp_path / "jobs.db"
    async with JobQueue(SqliteBackend(path), catalog=catalog, sinks=[], poll_interval=0.05) as worker:
        worker.register(typed, lambda job: {"answer": 42})
        await worker.start()
        job = await worker.enqueue(typed, {})
        assert await job.wait(timeout=10) == {"answer": 42}
    async with JobQueue(SqliteBackend(path), catalog=catalog, sinks=[]) as reader:
        assert await reader.result(job.id, timeout=1) == {"answer": 42}
        assert await reader.result_store.get(uuid.uuid4().hex, now=time.time()) is None  # type: ignore[union-attr]


RESULTS_APP = """
import attrs

from lssm_jobs import define_job_type
from lssm_jobs.handlers import Handlers


@attrs.frozen
class Total:
    sum: int
    count: int


SumJob = define_job_type(type="procs.sum", result=Total)
handlers = Handlers()


@handlers.register(SumJob)
def add(job):
    return Total(sum=sum(job.payload["numbers"]), count=len(job.payload["numbers"]))
"""


@run_async(timeout=120)
async def test_a_result_comes_back_from_a_worker_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `lssm-jobs worker` process runs the job; this process waits for the typed result on the same file."""
    import importlib
    import sys

    from lssm_jobs.testing.processes import CliProcess

    (tmp_path / "results_procs_app.py").write_text(RESULTS_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    app = importlib.import_module("results_procs_app")
    database = tmp_path / "jobs.db"
    catalog = JobCatalog()
    catalog.add(app.SumJob)
    url = f"sqlite:///{database}"
    with CliProcess(
        ["worker", "results_procs_app:handlers", "--url", url, "-o", "poll_interval=0.05"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    ) as worker:
        worker.wait_for(r"lssm-jobs worker:")
        async with JobQueue(SqliteBackend(database), catalog=catalog, sinks=[]) as queue:
            job = await queue.enqueue(app.SumJob, {"numbers": [1, 2, 3, 4]})
            try:
                result = await job.wait(timeout=60)
            except TimeoutError:  # say why: the job's state, and what the worker printed (or its exit)
                raise AssertionError(
                    f"no result within 60 s; job {await queue.get(job.id)}; worker exit code "
                    f"{worker.process.poll()}; its output:\n{worker.output[-4000:]}"
                ) from None
            assert result == app.Total(sum=10, count=4)
    sys.modules.pop("results_procs_app", None)
