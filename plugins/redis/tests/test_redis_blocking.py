"""Synchronous enqueue (``lssm_jobs.blocking``) pushing straight from the calling threads to Redis.

All against a real redis-server (fixtures in conftest.py)."""

from __future__ import annotations

import threading
from typing import Any

from lssm_jobs.blocking import open_blocking_queue
from lssm_jobs.events import Event
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs_redis import RedisBackend
from lssm_jobs_redis.blocking import BlockingPusher


def blocking_queue(url: str, prefix: str, **options: Any) -> Any:
    return open_blocking_queue("redis", url=url, prefix=prefix, catalog=JobCatalog(), sinks=[], **options)


def test_threads_push_over_their_own_connections(redis_server: Any, unique_prefix: Any) -> None:
    with blocking_queue(redis_server.url, unique_prefix()) as jobs:
        ids: list[str] = []
        lock = threading.Lock()

        def view(n: int) -> None:  # what a Flask or Django view does
            for k in range(25):
                job = jobs.enqueue("signup.welcome", {"user": n, "k": k})
                with lock:
                    ids.append(job.id)

        threads = [threading.Thread(target=view, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        backend = jobs.queue.backend
        assert isinstance(backend, RedisBackend)
        pusher = backend.blocking_pusher()
        assert isinstance(pusher, BlockingPusher)
        assert len(pusher._connections) == 4  # one per thread; the loop thread pushed nothing
        assert len(set(ids)) == 100
        assert jobs.counts()["default"][JobStatus.PENDING] == 100
        job = jobs.get(ids[0])
        assert job is not None and job.status is JobStatus.PENDING and job.payload["k"] == 0


def test_a_duplicate_returns_the_live_job(redis_server: Any, unique_prefix: Any) -> None:
    with blocking_queue(redis_server.url, unique_prefix()) as jobs:
        first = jobs.enqueue("report.build", {"n": 1}, dedupe_key="report")
        second = jobs.enqueue("report.build", {"n": 2}, dedupe_key="report")
        assert second.id == first.id and second.payload == {"n": 1}
        assert jobs.counts()["default"][JobStatus.PENDING] == 1


def test_enqueued_events_are_still_emitted(redis_server: Any, unique_prefix: Any) -> None:
    with blocking_queue(redis_server.url, unique_prefix()) as jobs:
        seen: list[Event] = []
        jobs.queue.on("job.enqueued", seen.append)
        job = jobs.enqueue("report.build", {"n": 1}, delay_ms=60_000)
        assert [event.job_id for event in seen] == [job.id]
        assert job.status is JobStatus.SCHEDULED


def test_pushes_survive_a_restart_and_lost_functions(own_redis_server: Any, unique_prefix: Any) -> None:
    with blocking_queue(own_redis_server.url, unique_prefix(), reconnect_timeout=30.0) as jobs:
        before = jobs.enqueue("report.build", {"n": 1})
        own_redis_server.restart(kill=True)  # the threads' connections are now dead
        after_restart = jobs.enqueue("report.build", {"n": 2})
        with own_redis_server.client() as client:
            client.function_flush()  # as after a failover to a replica that never saw our library
        after_flush = jobs.enqueue("report.build", {"n": 3})
        assert jobs.counts()["default"][JobStatus.PENDING] == 3
        for job in (before, after_restart, after_flush):
            stored = jobs.get(job.id)
            assert stored is not None and stored.payload == job.payload
