"""Which transport carries the backend's calls, and the fallback to plain redis-py calls when redis-py's
internals are not what the fast transports rely on (``lssm_jobs_redis.internals``).

The fallback is forced by pointing the internals module at attribute names no redis-py has, which is what a
redis-py release that renamed ``_writer`` or ``_sock`` would look like to it. Against a real redis-server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from lssm_jobs.blocking import BlockingQueue
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import open_queue
from lssm_jobs.testing import run_async, wait_until
from lssm_jobs_redis import RedisBackend, internals, resp
from lssm_jobs_redis.blocking import BlockingPusher


@pytest.fixture
def changed_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "ASYNC_WRITER_ATTRIBUTE", "_stream_writer_of_a_future_redis_py")
    monkeypatch.setattr(internals, "SYNC_SOCKET_ATTRIBUTE", "_socket_of_a_future_redis_py")


def _queue(url: str, prefix: str, handled: list[int]) -> Any:
    queue = open_queue(
        "redis", url=url, prefix=prefix, sinks=[], catalog=JobCatalog(), concurrency=4, poll_interval=0.2
    )
    queue.register("flow", lambda job: handled.append(job.payload["i"]))
    return queue


@run_async()
async def test_jobs_flow_through_redis_py_when_its_internals_differ(
    changed_internals: None, redis_server: Any, unique_prefix: Callable[[], str], caplog: Any
) -> None:
    handled: list[int] = []
    queue = _queue(redis_server.url, unique_prefix(), handled)
    caplog.set_level(logging.WARNING, logger="lssm_jobs.redis")
    async with queue:
        backend = queue.backend
        assert isinstance(backend, RedisBackend) and backend.options.pipelined  # asked for, not available
        assert backend.transport == "redis-py"
        assert "every call goes through redis-py" in caplog.text
        assert "_stream_writer_of_a_future_redis_py" in caplog.text
        await queue.enqueue_many([("flow", {"i": i}) for i in range(20)])
        await queue.enqueue("flow", {"i": 20})
        await queue.start()
        await wait_until(lambda: len(handled) == 21, message="21 jobs handled over redis-py")

        async def all_completed() -> bool:
            return (await queue.counts())["default"][JobStatus.COMPLETED] == 21

        await wait_until(all_completed, message="21 jobs recorded as completed")
        assert backend.channel_calls == 0


def test_blocking_enqueues_go_through_the_event_loop_when_its_internals_differ(
    changed_internals: None, redis_server: Any, unique_prefix: Callable[[], str], caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="lssm_jobs.redis")
    handled: list[int] = []
    with BlockingQueue(_queue(redis_server.url, unique_prefix(), handled)) as jobs:
        ids = [jobs.enqueue("flow", {"i": i}).id for i in range(5)]
        backend = jobs.queue.backend
        assert isinstance(backend, RedisBackend)
        assert backend.blocking_pusher() is None
        assert "blocking enqueues go through the event loop" in caplog.text
        assert [job.payload["i"] for job in map(jobs.get, ids) if job is not None] == list(range(5))


def test_blocking_enqueues_use_the_direct_pusher_when_internals_fit(
    redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    handled: list[int] = []
    with BlockingQueue(_queue(redis_server.url, unique_prefix(), handled)) as jobs:
        ids = [jobs.enqueue("flow", {"i": i}).id for i in range(5)]
        pusher = jobs.queue.backend.blocking_pusher()
        assert isinstance(pusher, BlockingPusher)
        assert pusher.sent == 5  # every enqueue went out on the calling thread's own socket
        assert jobs.counts()["default"][JobStatus.PENDING] == 5
        assert len(ids) == 5


@pytest.mark.parametrize("pipelined", [True, False])
@run_async()
async def test_the_switch_chooses_the_transport(
    pipelined: bool, redis_backend_factory: Callable[..., RedisBackend]
) -> None:
    backend = redis_backend_factory(pipelined=pipelined)
    await backend.open()
    try:
        assert backend.transport == ("pipelined" if pipelined else "redis-py")
        assert backend.options.pipelined is pipelined
    finally:
        await backend.close()


def test_a_blocking_enqueue_with_every_option_keeps_each_in_place(
    redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    # The direct path passes enqueue's arguments on to the producer positionally: each gets a value no
    # other argument has, so one passed in the wrong place shows (as tests/test_producer.py does for the
    # asynchronous paths).
    handled: list[int] = []
    with BlockingQueue(_queue(redis_server.url, unique_prefix(), handled)) as jobs:
        run_at = time.time() + 5000.25
        job = jobs.enqueue(
            "flow",
            {"i": 1},
            run_at=run_at,
            priority=7,
            dedupe_key="flow:1",
            queue="q-flow",
            max_retries=9,
            timeout_ms=1234,
            meta={"trace": "t-1"},
        )
        pusher = jobs.queue.backend.blocking_pusher()
        assert isinstance(pusher, BlockingPusher) and pusher.sent == 1
        assert (job.queue, job.priority, job.dedupe_key, job.max_retries, job.run_at) == (
            "q-flow",
            7,
            "flow:1",
            9,
            run_at,
        )
        assert (job.options.max_retries, job.options.timeout_ms, dict(job.meta)) == (9, 1234, {"trace": "t-1"})
        assert job.status is JobStatus.SCHEDULED
        stored = jobs.get(job.id)
        assert stored == job
        # a delay instead of a time: the other of the two
        delayed = jobs.enqueue("flow", {"i": 2}, delay_ms=60_000)
        assert delayed.run_at == pytest.approx(delayed.created_at + 60, abs=1e-3)


@pytest.mark.parametrize("parser", ["python", "hiredis"])
def test_both_reply_parsers_carry_jobs(
    parser: str, monkeypatch: pytest.MonkeyPatch, redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    # hiredis is a dependency on CPython, so the pure-Python parser (other interpreters) is chosen here.
    if parser == "python":
        monkeypatch.setattr(resp, "_hiredis", None)
    elif resp.reader_name() != "hiredis":
        pytest.skip("hiredis is not installed here")
    assert resp.reader_name() == parser
    handled: list[int] = []
    prefix = unique_prefix()
    with BlockingQueue(_queue(redis_server.url, prefix, handled)) as blocking:
        blocking.enqueue("flow", {"i": 600})  # the synchronous pusher's parser
        pusher = blocking.queue.backend.blocking_pusher()
        assert isinstance(pusher, BlockingPusher) and pusher.sent == 1

    async def flow() -> None:
        async with _queue(redis_server.url, prefix, handled) as queue:
            await queue.enqueue_many([("flow", {"i": i}) for i in range(600)])  # replies longer than one read
            await queue.start()
            await wait_until(lambda: len(handled) == 601, message="601 jobs handled")
            assert queue.backend.transport == "pipelined" and queue.backend.channel_calls > 0

    asyncio.run(flow())


@pytest.mark.parametrize(
    ("job_id", "token", "queue"),
    [("0123abcd", b"7", "default"), ("id-\udcff-\u00e9", b"", ""), ("x" * 64, b"123456789012", "q:\u00e9t\u00e9")],
)
def test_delivery_arguments_are_the_bulk_strings_of_id_token_and_queue(job_id: str, token: bytes, queue: str) -> None:
    """The settle path's one-expression encoder writes what the general encoders write, byte for byte
    (names read from Redis that are not UTF-8 come back as the same bytes)."""
    expected = resp.bulk_text(job_id) + resp.bulk(token) + resp.bulk_text(queue)
    assert resp.delivery_arguments(job_id, token, queue) == expected
