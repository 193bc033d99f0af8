"""The blocking facade lets code without an event loop enqueue and inspect jobs, from many threads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
from lssm_jobs import JobValidationError, define_job_type
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.blocking import BlockingQueue, open_blocking_queue
from lssm_jobs.cancellation import CancelResult
from lssm_jobs.errors import JobFailedError, PermanentJobError, QueueClosedError, ResultTimeoutError
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import JobQueue, MemoryJobQueue


@attrs.frozen
class Signup:
    email: str


@attrs.frozen
class Greeted:
    email: str
    sent: bool


def test_enqueue_from_plain_threads() -> None:
    catalog = JobCatalog()
    signup = define_job_type(type="signup.welcome", payload=Signup, catalog=catalog)
    jobs = BlockingQueue(MemoryJobQueue(catalog=catalog, sinks=[]))
    ids: list[str] = []
    lock = threading.Lock()

    def view(n: int) -> None:  # what a Flask/Django view does
        job = jobs.enqueue(signup, {"email": f"user{n}@example.com"})
        with lock:
            ids.append(job.id)

    threads = [threading.Thread(target=view, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 8
    fetched = jobs.get(ids[0])
    assert fetched is not None and fetched.status is JobStatus.PENDING
    assert jobs.counts()["default"][JobStatus.PENDING] == 8
    with pytest.raises(JobValidationError, match=r"\$\.email"):
        jobs.enqueue(signup, {"email": 5})
    jobs.close()
    with pytest.raises(QueueClosedError):
        jobs.enqueue(signup, {"email": "late@example.com"})


def test_open_blocking_queue_by_backend_name() -> None:
    with open_blocking_queue("memory", sinks=[]) as jobs:
        job = jobs.enqueue("anything", {"n": 1}, delay_ms=60_000)
        assert job.status is JobStatus.SCHEDULED
        assert jobs.list_dead() == []
        assert jobs.cancel(job.id) is CancelResult.REMOVED
        cancelled = jobs.get(job.id)
        assert cancelled is not None and cancelled.status is JobStatus.CANCELLED


def test_result_waits_for_a_worker_in_another_thread(tmp_path: Path) -> None:
    catalog = JobCatalog()
    welcome = define_job_type(type="signup.result", payload=Signup, result=Greeted, catalog=catalog)
    failing = define_job_type(type="signup.fails", result=int, catalog=catalog)
    path = tmp_path / "jobs.db"
    stop = threading.Event()
    ready = threading.Event()

    def fail(job: Any) -> int:
        raise PermanentJobError("mailbox full")

    async def run_worker() -> None:
        settings: dict[str, Any] = {"catalog": catalog, "sinks": [], "poll_interval": 0.05, "queues": ["default"]}
        async with JobQueue(SqliteBackend(path), **settings) as worker:
            worker.register(welcome, lambda job: Greeted(email=job.payload.email, sent=True))
            worker.register(failing, fail)
            await worker.start()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.02)

    thread = threading.Thread(target=asyncio.run, args=(run_worker(),))
    thread.start()
    try:
        assert ready.wait(10)
        with open_blocking_queue("sqlite", path=path, catalog=catalog, sinks=[], timeout=5) as jobs:
            job = jobs.enqueue(welcome, Signup(email="a@example.com"))
            assert jobs.result(job, timeout=10) == Greeted(email="a@example.com", sent=True)
            assert jobs.result(job.id, timeout=10) == Greeted(email="a@example.com", sent=True)
            with pytest.raises(JobFailedError, match="mailbox full"):
                jobs.result(jobs.enqueue(failing, {}), timeout=10)
        with open_blocking_queue("sqlite", path=path, catalog=catalog, sinks=[], timeout=5) as idle:
            parked = idle.enqueue(welcome, Signup(email="b@example.com"), queue="parked")
            with pytest.raises(ResultTimeoutError):
                idle.result(parked, timeout=0.2)
    finally:
        stop.set()
        thread.join(10)
