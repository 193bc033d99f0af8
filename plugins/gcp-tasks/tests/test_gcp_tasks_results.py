"""Results on Cloud Tasks, which keeps none itself (``results=False``): a queue pointed at another result
store by name keeps them there; without one, waiting for a typed result says what is missing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.errors import JobFailedError, PermanentJobError, ResultStoreUnavailableError
from lssm_jobs.jobs import Job, JobCatalog, define_job_type
from lssm_jobs.queue import JobQueue
from lssm_jobs.results.sqlite import SqliteResultStore
from lssm_jobs.testing import run_async
from lssm_jobs_gcp_tasks import CloudTasksBackend


@run_async(timeout=90)
async def test_a_cloud_tasks_queue_keeps_results_in_the_store_it_names(
    gcp_tasks_factory: Callable[..., CloudTasksBackend], tmp_path: Path
) -> None:
    assert not CloudTasksBackend.capabilities.results
    catalog = JobCatalog()
    square = define_job_type(type="tasks.square", result=int, catalog=catalog)
    broken = define_job_type(type="tasks.broken", result=int, catalog=catalog)

    async def fail(job: Job[Any, int]) -> int:
        raise PermanentJobError("no squares today")

    queue = JobQueue(
        gcp_tasks_factory(),
        catalog=catalog,
        sinks=[],
        result_store="sqlite",
        result_store_options={"path": str(tmp_path / "results.db")},
    )
    assert isinstance(queue.result_store, SqliteResultStore)
    queue.register(square, lambda job: job.payload["n"] ** 2)
    queue.register(broken, fail)
    async with queue:
        await queue.start()
        job = await queue.enqueue(square, {"n": 12})
        assert await job.wait(timeout=30) == 144
        with pytest.raises(JobFailedError, match="no squares today"):
            await queue.result(await queue.enqueue(broken, {}), timeout=30)


@run_async(timeout=90)
async def test_a_cloud_tasks_queue_without_a_result_store_says_so(
    gcp_tasks_factory: Callable[..., CloudTasksBackend],
) -> None:
    catalog = JobCatalog()
    square = define_job_type(type="tasks.square.nowhere", result=int, catalog=catalog)
    async with JobQueue(gcp_tasks_factory(), catalog=catalog, sinks=[]) as queue:
        assert queue.result_store is None
        job = await queue.enqueue(square, {"n": 2})
        with pytest.raises(ResultStoreUnavailableError, match="result_store="):
            await job.wait(timeout=1)
