"""The blocking facade lets code without an event loop enqueue and inspect jobs, from many threads."""

from __future__ import annotations

import threading

import attrs
import pytest
from lssm_jobs import JobValidationError, define_job_type
from lssm_jobs.blocking import BlockingQueue, open_blocking_queue
from lssm_jobs.cancellation import CancelResult
from lssm_jobs.errors import QueueClosedError
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import MemoryJobQueue


@attrs.frozen
class Signup:
    email: str


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
