"""Synchronous enqueue (``lssm_jobs.blocking``) pushing straight from the calling threads to Redis.

All against a real redis-server (fixtures in conftest.py)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
import redis
from lssm_jobs.blocking import open_blocking_queue
from lssm_jobs.events import Event
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs_redis import RedisBackend
from lssm_jobs_redis.blocking import _UNPOLLED_AFTER_MISS, BlockingPusher, _poll, _usable_cpus


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


@pytest.mark.parametrize("spin_us", [0, 200])
def test_pushes_wait_for_the_reply_polling_or_sleeping(
    redis_server: Any, unique_prefix: Any, spin_us: int
) -> None:
    with blocking_queue(redis_server.url, unique_prefix(), reply_spin_us=spin_us) as jobs:
        ids = [jobs.enqueue("report.build", {"n": n}).id for n in range(20)]
        pusher = jobs.queue.backend.blocking_pusher()
        assert isinstance(pusher, BlockingPusher)
        assert (pusher._spin > 0) is (spin_us > 0 and _usable_cpus() > 1)
        assert [job.payload["n"] for job in map(jobs.get, ids) if job is not None] == list(range(20))


def test_polling_stops_for_a_while_when_replies_come_later_than_it_waits(
    redis_server: Any, unique_prefix: Any
) -> None:
    # A reply that takes longer than the polling time (here: the server holds writes for 100 ms, as a
    # remote Redis would be far away) makes the thread sleep at once for its next 64 pushes.
    admin = redis.Redis.from_url(redis_server.url)
    with blocking_queue(redis_server.url, unique_prefix()) as jobs:
        jobs.enqueue("report.build", {"n": 0})
        pusher = jobs.queue.backend.blocking_pusher()
        assert isinstance(pusher, BlockingPusher)
        if not pusher._spin:
            pytest.skip("polling is off in a process limited to one CPU")
        own = pusher._connection()
        own.unpolled = 0  # whatever the first push saw
        admin.execute_command("CLIENT", "PAUSE", "100", "WRITE")
        jobs.enqueue("report.build", {"n": 1})  # answered after the pause: the poll missed it
        assert own.unpolled == _UNPOLLED_AFTER_MISS
        jobs.enqueue("report.build", {"n": 2})
        assert own.unpolled == _UNPOLLED_AFTER_MISS - 1
        assert jobs.counts()["default"][JobStatus.PENDING] == 3
    admin.close()


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_polling_a_socket_returns_data_or_gives_up_without_blocking(timeout: float | None) -> None:
    # Sockets with and without a timeout (redis-py sets one when socket_timeout is given) differ in how a
    # read that must not sleep is done; both must come back within the spin budget.
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(timeout)
        started = time.perf_counter()
        assert _poll(left, 0.002) is None
        assert time.perf_counter() - started < 1.0  # gave up: did not sleep until the 5 s timeout
        right.sendall(b"+OK\r\n")
        assert _poll(left, 1.0) == b"+OK\r\n"
        right.close()
        assert _poll(left, 1.0) == b""  # closed by the peer: the caller sees the end of the stream


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


def test_the_first_blocking_push_waits_for_a_redis_that_is_down(own_redis_server: Any, unique_prefix: Any) -> None:
    # The pusher is made (and its first connection tried) on the first blocking enqueue: Redis being down
    # then is an outage like any other, ridden out within reconnect_timeout, not an error.
    with blocking_queue(own_redis_server.url, unique_prefix(), reconnect_timeout=30.0) as jobs:
        jobs.counts()  # the queue is open (its event loop client connected)
        own_redis_server.stop(kill=True)
        restarter = threading.Timer(0.5, own_redis_server.start)
        restarter.start()
        try:
            job = jobs.enqueue("report.build", {"n": 1})
        finally:
            restarter.join()
        assert isinstance(jobs.queue.backend.blocking_pusher(), BlockingPusher)
        stored = jobs.get(job.id)
        assert stored is not None and stored.payload == {"n": 1}
