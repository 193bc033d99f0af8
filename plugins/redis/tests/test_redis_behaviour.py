"""Redis-specific behaviour beyond the conformance suite: key layout, lease tokens, hand-offs, retention,
dead letters kept verbatim, dedupe, ordering, clients owned by the caller, URL handling and the event sink.
All against a real redis-server (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aioredis
from lssm_jobs.backends.base import OutgoingJob
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.events import JobCompleted
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import JobQueue, open_queue
from lssm_jobs.testing import opened, run_async, wait_until
from lssm_jobs_redis import (
    RedisBackend,
    RedisEventSink,
    RedisJobQueue,
    client_from_url,
    hash_tagged,
    redact_url,
)
from lssm_jobs_redis.resp import RespParser, pack_command
from redis.asyncio import RedisCluster
from redis.crc import key_slot
from redis.exceptions import TimeoutError as RedisTimeoutError

BackendFactory = Callable[..., RedisBackend]


async def blocked(backend: RedisBackend, queue: str | None) -> None:
    """Wait until ``backend`` is registered as an idle consumer (blocked in ``lease``) of ``queue``."""
    key = backend.keys.idlers if queue is None else backend.keys.queue(queue, "idlers")
    await wait_until(
        lambda: backend.client.zcard(key), message=f"consumer blocked on {queue or 'every queue'}"
    )


def outgoing(
    *,
    queue: str = "default",
    priority: int = 0,
    delay: float = 0.0,
    dedupe: str | None = None,
    body: bytes = b"{}",
) -> OutgoingJob:
    now = time.time()
    return OutgoingJob(
        id=uuid.uuid4().hex,
        type="t",
        queue=queue,
        priority=priority,
        run_at=now + delay,
        created_at=now,
        dedupe_key=dedupe,
        body=body,
    )


# -- key layout --------------------------------------------------------------------------------------------


def test_prefixes_become_hash_tags() -> None:
    assert hash_tagged("jobs:") == "{jobs}:"
    assert hash_tagged("jobs") == "{jobs}"  # another job system than "jobs:" (see test_redis_faults.py)
    assert hash_tagged("jobs::") == "{jobs:}:"
    assert hash_tagged("{app}:jobs:") == "{app}:jobs:"
    for bad in ("", ":", "{}", "a}b", "{abc"):
        with pytest.raises(ValueError):
            hash_tagged(bad)


@run_async()
async def test_every_key_of_a_prefix_is_in_one_cluster_slot(
    redis_backend_factory: BackendFactory, redis_server: Any
) -> None:
    backend = redis_backend_factory()
    async with opened(backend):
        await backend.push([outgoing(queue="a"), outgoing(queue="b", delay=60), outgoing(dedupe="k")])
        leased = await backend.lease(queues=None, limit=2, lease_ms=10_000, wait=0)
        await leased[0].ack()
        await leased[1].dead_letter(reason="test", error="E", traceback="T")
        await backend.lease(queues=["b"], limit=1, lease_ms=10_000, wait=0.05)  # registers as idle
    with redis_server.client() as client:
        keys = list(client.scan_iter(match=backend.keys.pattern, count=1000))
    assert len(keys) >= 8
    assert {key_slot(key) for key in keys} == {key_slot(backend.keys.queues.encode())}


# -- leases -----------------------------------------------------------------------------------------------


@run_async()
async def test_a_stale_settle_is_ignored(redis_backend_factory: BackendFactory) -> None:
    first, second = redis_backend_factory(), redis_backend_factory()
    async with opened(first), opened(second):
        (job,) = await first.push([outgoing()])
        (lost,) = await first.lease(queues=None, limit=1, lease_ms=100, wait=0)
        (taken,) = await wait_until(
            lambda: second.lease(queues=None, limit=1, lease_ms=10_000, wait=0),
            message="the expired lease leased again",
        )
        assert taken.id == lost.id and taken.attempt == 2
        assert await lost.extend(10_000) is False
        await lost.ack()  # ignored: the lease moved on
        record = await second.get(job.id)
        assert record is not None and record.status is JobStatus.ACTIVE
        await taken.ack()
        record = await second.get(job.id)
        assert record is not None and record.status is JobStatus.COMPLETED and record.attempts == 2
        await taken.ack()  # settling twice changes nothing


@run_async()
async def test_extend_takes_back_an_expired_lease_nobody_else_took(
    redis_backend_factory: BackendFactory,
) -> None:
    backend = redis_backend_factory()
    async with opened(backend):
        (job,) = await backend.push([outgoing(queue="other")])
        (delivery,) = await backend.lease(queues=["other"], limit=1, lease_ms=50, wait=0)

        async def reaped() -> bool:
            # an unrelated lease call on the queue reaps it once expired (pending again), but does not
            # take it (limit 0)
            assert await backend.lease(queues=["other"], limit=0, lease_ms=10_000, wait=0) == []
            record = await backend.get(job.id)
            return record is not None and record.status is JobStatus.PENDING

        await wait_until(reaped, message="the expired lease reaped")
        assert await delivery.extend(10_000) is True
        record = await backend.get(job.id)
        assert record is not None and record.status is JobStatus.ACTIVE
        await delivery.ack()


@run_async()
async def test_push_is_idempotent_by_id(redis_backend_factory: BackendFactory) -> None:
    backend = redis_backend_factory()
    async with opened(backend):
        job = outgoing()
        assert [result.created for result in await backend.push([job])] == [True]
        assert [result.created for result in await backend.push([job])] == [True]  # a retried push
        counts = await backend.counts()
        assert counts["default"][JobStatus.PENDING] == 1


# -- order -------------------------------------------------------------------------------------------------


@run_async()
async def test_fifo_within_a_priority_and_priority_across_queues(
    redis_backend_factory: BackendFactory,
) -> None:
    backend = redis_backend_factory()
    async with opened(backend):
        fifo = [outgoing(queue="a") for _ in range(20)]
        await backend.push(fifo)
        urgent = outgoing(queue="b", priority=5)
        await backend.push([urgent])
        leased = await backend.lease(queues=["a", "b"], limit=21, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in leased] == [urgent.id] + [job.id for job in fifo]
        # a released job goes back to its old place in line, not to the end
        await leased[1].release()
        later = outgoing(queue="a")
        await backend.push([later])
        again = await backend.lease(queues=["a"], limit=2, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in again] == [fifo[0].id, later.id]
        assert again[0].attempt == 1  # the release did not count


@run_async()
async def test_the_line_and_the_ready_set_form_one_order(redis_backend_factory: BackendFactory) -> None:
    # Priority-0 jobs wait in a list (the line); other priorities and jobs put back in their old place wait
    # in the ready set. Leases must see one order: priority first, then the order jobs became ready.
    backend = redis_backend_factory()
    async with opened(backend):
        a, b, c, d = (outgoing(queue="m") for _ in range(4))
        low, high = outgoing(queue="m", priority=-2), outgoing(queue="m", priority=3)
        await backend.push([a, b, c])
        await backend.push([low, d, high])
        first = await backend.lease(queues=["m"], limit=2, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in first] == [high.id, a.id]
        await first[1].release()  # a: back in the ready set, still ahead of the line
        (expiring,) = await backend.lease(queues=["m"], limit=1, lease_ms=50, wait=0)
        assert expiring.id == a.id
        (lost,) = await backend.lease(queues=["m"], limit=1, lease_ms=50, wait=0)
        assert lost.id == b.id

        async def both_reaped() -> bool:
            await backend.lease(queues=["m"], limit=0, lease_ms=10_000, wait=0)
            return (await backend.counts())["m"][JobStatus.PENDING] == 5

        await wait_until(both_reaped, message="the two expired leases back in line")
        e = outgoing(queue="m")
        await backend.push([e])
        counts = await backend.counts()
        assert counts["m"][JobStatus.PENDING] == 6 and counts["m"][JobStatus.ACTIVE] == 1
        rest = await backend.lease(queues=["m"], limit=10, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in rest] == [a.id, b.id, c.id, d.id, e.id, low.id]


@run_async()
async def test_jobs_put_back_keep_the_order_they_left_the_line_in(
    redis_backend_factory: BackendFactory,
) -> None:
    # Jobs in the line draw their sequence number when they leave it; a job that went back into the line
    # (a retry) draws a new one then, so jobs put back afterwards return in the order they were leased.
    backend = redis_backend_factory()
    async with opened(backend):
        j, k = outgoing(queue="r"), outgoing(queue="r")
        await backend.push([j])
        (first,) = await backend.lease(queues=["r"], limit=1, lease_ms=10_000, wait=0)
        await backend.push([k])
        await first.retry(run_at=time.time() - 1, error="again")  # due at once: behind k in the line
        leased = await backend.lease(queues=["r"], limit=2, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in leased] == [k.id, j.id]
        for delivery in reversed(leased):
            await delivery.release()
        again = await backend.lease(queues=["r"], limit=2, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in again] == [k.id, j.id]


@run_async()
async def test_a_handed_over_job_put_back_returns_to_its_place(redis_backend_factory: BackendFactory) -> None:
    consumer, producer = redis_backend_factory(), redis_backend_factory()
    async with opened(consumer), opened(producer):
        waiting = asyncio.create_task(consumer.lease(queues=["h"], limit=1, lease_ms=10_000, wait=10))
        await blocked(consumer, "h")
        first, second = outgoing(queue="h"), outgoing(queue="h")
        await producer.push([first])
        (handed,) = await asyncio.wait_for(waiting, 5)
        assert handed.id == first.id
        await producer.push([second])
        await handed.release()
        leased = await consumer.lease(queues=["h"], limit=2, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in leased] == [first.id, second.id]


@run_async()
async def test_leasing_from_several_queues_merges_their_lines_in_ready_order(
    redis_backend_factory: BackendFactory,
) -> None:
    backend = redis_backend_factory()
    async with opened(backend):
        pushed = []
        for index in range(6):
            job = outgoing(queue="x" if index % 2 else "y")
            await backend.push([job])
            pushed.append(job)
        (taken,) = await backend.lease(queues=["x", "y"], limit=1, lease_ms=10_000, wait=0)
        assert taken.id == pushed[0].id
        await taken.release()
        leased = await backend.lease(queues=["y", "x"], limit=4, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in leased] == [job.id for job in pushed[:4]]
        leased += await backend.lease(queues=None, limit=10, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in leased] == [job.id for job in pushed]


@run_async()
async def test_jobs_of_one_push_keep_their_own_times(redis_backend_factory: BackendFactory) -> None:
    # The push call writes each distinct time object once; jobs sharing one, and delayed jobs between them,
    # must each be stored with their own.
    backend = redis_backend_factory()
    now = time.time()
    jobs = []
    for index in range(6):
        job = outgoing(delay=60 + index if index % 2 else 0.0)
        if not index % 2:
            job = attrs.evolve(job, run_at=now, created_at=now)
        jobs.append(job)
    async with opened(backend):
        await backend.push(jobs)
        counts = await backend.counts()
        assert counts["default"][JobStatus.PENDING] == 3 and counts["default"][JobStatus.SCHEDULED] == 3
        for job in jobs:
            record = await backend.get(job.id)
            assert record is not None
            assert record.run_at == pytest.approx(job.run_at, abs=1e-6)
            assert record.created_at == pytest.approx(job.created_at, abs=1e-6)


@pytest.mark.parametrize("pipelined", [True, False])
@run_async()
async def test_jobs_of_several_kinds_in_one_push_keep_their_own_fields(
    redis_backend_factory: BackendFactory, pipelined: bool
) -> None:
    # A push writes what its jobs share (type, queue, priority, creation time) once per kind of job.
    backend = redis_backend_factory(pipelined=pipelined, functions=pipelined)
    jobs = []
    for index in range(12):
        job = outgoing(queue=("a", "b")[index % 2], priority=(0, 0, 4)[index % 3], dedupe=f"d{index}")
        jobs.append(attrs.evolve(job, type=("x", "y", "z", "x")[index % 4]))
    async with opened(backend):
        assert all(result.created for result in await backend.push(jobs))
        for job in jobs:
            record = await backend.get(job.id)
            assert record is not None
            assert (record.type, record.queue, record.priority, record.dedupe_key) == (
                job.type,
                job.queue,
                job.priority,
                job.dedupe_key,
            )
            assert record.created_at == pytest.approx(job.created_at, abs=1e-6)
        assert_transport(backend, pipelined)


@run_async()
async def test_many_pushes_in_one_call_are_chunked_and_pipelined(
    redis_backend_factory: BackendFactory,
) -> None:
    backend = redis_backend_factory(push_chunk=7)
    async with opened(backend):
        jobs = [outgoing() for _ in range(100)]
        results = await backend.push(jobs)
        assert [result.id for result in results] == [job.id for job in jobs]
        leased = await backend.lease(queues=None, limit=100, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in leased] == [job.id for job in jobs]


# -- waiting -----------------------------------------------------------------------------------------------


@run_async()
async def test_an_idle_consumer_gets_a_new_job_handed_over_at_once(
    redis_backend_factory: BackendFactory,
) -> None:
    consumer, producer = redis_backend_factory(), redis_backend_factory()
    async with opened(consumer), opened(producer):
        waiting = asyncio.create_task(consumer.lease(queues=["q"], limit=5, lease_ms=10_000, wait=10))
        await blocked(consumer, "q")
        assert not waiting.done()
        started = time.monotonic()
        (job,) = await producer.push([outgoing(queue="q", body=b"\x00binary\xff")])
        (delivery,) = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 1.0
        assert delivery.id == job.id and delivery.body == b"\x00binary\xff" and delivery.attempt == 1
        record = await producer.get(job.id)
        assert record is not None and record.status is JobStatus.ACTIVE
        await delivery.ack()


@run_async()
async def test_a_delayed_job_wakes_an_idle_consumer_when_due(redis_backend_factory: BackendFactory) -> None:
    consumer, producer = redis_backend_factory(), redis_backend_factory()
    async with opened(consumer), opened(producer):
        waiting = asyncio.create_task(consumer.lease(queues=None, limit=5, lease_ms=10_000, wait=10))
        await blocked(consumer, None)
        (job,) = await producer.push([outgoing(delay=0.3)])
        (delivery,) = await asyncio.wait_for(waiting, 5)
        assert delivery.id == job.id
        await delivery.ack()


@run_async()
async def test_wake_ends_a_blocked_wait_promptly(redis_backend_factory: BackendFactory) -> None:
    backend = redis_backend_factory()
    async with opened(backend):
        waiting = asyncio.create_task(backend.lease(queues=None, limit=1, lease_ms=1000, wait=20))
        await blocked(backend, None)
        started = time.monotonic()
        backend.wake()
        assert await asyncio.wait_for(waiting, 5) == []
        assert time.monotonic() - started < 1.0


@run_async()
async def test_a_silent_blocking_connection_is_cut_and_replaced(own_redis_server: Any) -> None:
    backend = RedisBackend(url=own_redis_server.url, prefix="silent:")
    backend._block_grace = 0.2  # instead of 10 s
    admin = redis.Redis.from_url(own_redis_server.url)
    async with opened(backend):
        assert await backend._block(0.05) is None  # connected, and an empty wait times out in Redis
        admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")  # BLPOP (a write) gets no reply
        try:
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError, match=r"no reply to a .* BLPOP within"):
                await backend._block(0.05)
            assert time.monotonic() - started < 2.0  # cut by the watchdog, long before the pause ends
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        assert await backend._block(0.05) is None  # a new connection
    admin.close()


@run_async()
async def test_jobs_handed_to_a_consumer_that_stops_are_given_back(
    redis_backend_factory: BackendFactory,
) -> None:
    consumer, producer = redis_backend_factory(), redis_backend_factory()
    await consumer.open()
    async with opened(producer):
        # Register the consumer as idle (lease with a wait), but stop waiting before the job arrives.
        await consumer.lease(queues=["q"], limit=1, lease_ms=60_000, wait=0.05)
        (job,) = await producer.push([outgoing(queue="q")])
        await consumer.close()  # retires: the job handed to it goes back, unrun
        record = await producer.get(job.id)
        assert record is not None and record.status in (JobStatus.PENDING, JobStatus.ACTIVE)
        (delivery,) = await producer.lease(queues=["q"], limit=1, lease_ms=10_000, wait=2)
        assert delivery.id == job.id and delivery.attempt == 1
        await delivery.ack()


# -- retention, dead letters, dedupe ------------------------------------------------------------------------


@run_async()
async def test_completed_jobs_are_kept_for_their_retention(redis_backend_factory: BackendFactory) -> None:
    for options, kept in (({"completed_retention": 0}, 0), ({"completed_max": 2}, 2), ({}, 5)):
        backend = redis_backend_factory(prefix=f"ret{uuid.uuid4().hex[:8]}:", **options)
        await backend.open()
        try:
            jobs = await backend.push([outgoing() for _ in range(5)])
            for delivery in await backend.lease(queues=None, limit=5, lease_ms=10_000, wait=0):
                await delivery.ack()
            found = [await backend.get(job.id) for job in jobs]
            assert sum(record is not None for record in found) == kept, options
            assert all(record.status is JobStatus.COMPLETED for record in found if record is not None)
            assert (await backend.counts())["default"][JobStatus.COMPLETED] == kept
        finally:
            await backend.close()


@run_async()
async def test_dead_letters_keep_the_body_verbatim_and_replay_resets_attempts(
    redis_backend_factory: BackendFactory,
) -> None:
    backend = redis_backend_factory()
    async with opened(backend):
        body = bytes(range(256))
        (job,) = await backend.push([outgoing(body=body, dedupe="report")])
        (delivery,) = await backend.lease(queues=None, limit=1, lease_ms=10_000, wait=0)
        await delivery.dead_letter(
            reason="failed after 1 attempt", error="ValueError: x", traceback="Traceback..."
        )
        (dead,) = await backend.list_dead()
        assert (dead.id, dead.body, dead.reason, dead.error, dead.traceback, dead.attempts) == (
            job.id,
            body,
            "failed after 1 attempt",
            "ValueError: x",
            "Traceback...",
            1,
        )
        assert (await backend.counts())["default"][JobStatus.DEAD] == 1
        # the dedupe key is free again once its job is dead
        (fresh,) = await backend.push([outgoing(dedupe="report")])
        assert fresh.created and fresh.id != job.id
        # ... so the dead letter cannot be replayed while that live job holds it (nothing changes)
        with pytest.raises(DedupeConflictError) as conflict:
            await backend.replay_dead(job.id, run_at=time.time())
        assert (conflict.value.dedupe_key, conflict.value.live_job_id) == ("report", fresh.id)
        assert (await backend.get_dead(job.id)) == dead
        (taken,) = await backend.lease(queues=None, limit=1, lease_ms=10_000, wait=0)
        await taken.dead_letter(reason="again", error=None, traceback=None)
        # once it is not live, the replay takes the key back
        assert await backend.replay_dead(job.id, run_at=time.time()) is True
        assert await backend.replay_dead(job.id, run_at=time.time()) is False
        assert await backend.get_dead(job.id) is None
        (duplicate,) = await backend.push([outgoing(dedupe="report")])
        assert (duplicate.id, duplicate.created) == (job.id, False)
        (delivery,) = await backend.lease(queues=None, limit=2, lease_ms=10_000, wait=0)
        assert (delivery.id, delivery.attempt, delivery.body) == (job.id, 1, body)
        await delivery.dead_letter(reason="again", error=None, traceback=None)
        assert await backend.purge_dead([job.id, "unknown"]) == 1
        assert [letter.id for letter in await backend.list_dead()] == [fresh.id]
        assert await backend.purge_dead() == 1
        assert (await backend.counts())["default"][JobStatus.DEAD] == 0


# -- clients ------------------------------------------------------------------------------------------------


@run_async()
async def test_a_caller_owned_client_is_not_closed(
    redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    handled: list[str] = []
    queue = RedisJobQueue(
        redis=client, prefix=unique_prefix(), sinks=[], catalog=JobCatalog(), poll_interval=0.2
    )
    queue.register("owned", lambda job: handled.append(job.id))
    async with queue:
        job = await queue.enqueue("owned", {})
        await queue.start()
        await wait_until(lambda: handled == [job.id], message="job handled")
    assert await client.ping() is True  # still usable: the queue did not close it
    await client.aclose()


@run_async()
async def test_a_client_returning_text_is_refused(
    redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    backend = RedisBackend(redis=client, prefix=unique_prefix())
    with pytest.raises(ValueError, match="decode_responses=False"):
        await backend.open()
    await client.aclose()


@run_async()
async def test_open_queue_finds_the_plugin_by_name(
    redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    queue = open_queue("redis", url=redis_server.url, prefix=unique_prefix(), sinks=[], catalog=JobCatalog())
    assert isinstance(queue.backend, RedisBackend)
    async with queue:
        job = await queue.enqueue("by.name", {"x": 1})
        stored = await queue.get(job.id)
        assert stored is not None and stored.payload == {"x": 1}


@run_async()
async def test_an_unreachable_server_is_a_connection_error_without_credentials() -> None:
    backend = RedisBackend(url="redis://user:s3cret@127.0.0.1:1/0", socket_connect_timeout=0.5)
    with pytest.raises(ConnectionError) as raised:
        await backend.open()
    assert "s3cret" not in str(raised.value) and "127.0.0.1" in str(raised.value)


def test_urls_are_redacted_for_logs() -> None:
    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("rediss://:s3cret@host") == "rediss://:***@host"
    assert (
        redact_url("redis://host/0?sentinel_password=s3cret&db=1")
        == "redis://host/0?sentinel_password=***&db=1"
    )
    assert redact_url("redis://host:6379") == "redis://host:6379"
    # the password ends at the last "@", as the client parses it; when unsure, hide more, never less
    assert redact_url("redis://app:p@ss@host:6379/0") == "redis://app:***@host:6379/0"
    assert redact_url("redis://:a@b@c@host") == "redis://:***@host"
    assert redact_url("redis://app:a/b?c#d@host/0") == "redis://app:***@host/0"
    assert redact_url("redis+sentinel://u:p@w@h1:1,h2:2/m?sentinel_password=s@t") == "redis+sentinel://u:***"
    assert redact_url("unix:///run/redis.sock?password=s3@cret") == "unix://***"


def test_url_forms_build_the_right_clients() -> None:
    plain = client_from_url("rediss://app:pw@127.0.0.1:6380/2?ssl_cert_reqs=none")
    kwargs = plain.connection_pool.connection_kwargs  # type: ignore[union-attr]
    assert (kwargs["username"], kwargs["password"], kwargs["db"], kwargs["port"]) == ("app", "pw", 2, 6380)
    assert "SSL" in plain.connection_pool.connection_class.__name__  # type: ignore[union-attr]
    cluster = client_from_url("redis+cluster://app:pw@127.0.0.1:7000,127.0.0.1:7001")
    assert isinstance(cluster, RedisCluster)
    sentinel = client_from_url(
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/3?sentinel_password=x"
    )
    pool = sentinel.connection_pool  # type: ignore[union-attr]
    assert pool.service_name == "mymaster" and pool.connection_kwargs["db"] == 3
    for bad in (
        "http://host",
        "redis+sentinel://127.0.0.1:26379",
        "redis+cluster://h:notaport",
        "redis+cluster://h:1?bogus=1",
    ):
        with pytest.raises(ValueError):
            client_from_url(bad)


def test_the_resp_parser_handles_split_and_nested_replies() -> None:
    parser = RespParser()
    first = b"*3\r\n$3\r\nabc\r\n:42\r\n*2\r\n$-1\r\n+OK\r\n"
    for index in range(len(first) - 1):  # fed one byte at a time: nothing complete until the last byte
        parser.feed(first[index : index + 1])
        assert parser.gets() is False
    parser.feed(first[-1:] + b"-ERR boom\r\n")
    assert parser.gets() == [b"abc", 42, [None, b"OK"]]
    error = parser.gets()
    assert isinstance(error, Exception) and "boom" in str(error)
    assert parser.gets() is False
    assert pack_command(["SET", b"k", 1, 2.5]) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n2.5\r\n"


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined-channel", "redis-py-only"])
@run_async()
async def test_both_client_paths_run_jobs(
    pipelined: bool, redis_backend_factory: BackendFactory, unique_prefix: Callable[[], str]
) -> None:
    handled: list[int] = []
    queue = JobQueue(
        redis_backend_factory(prefix=unique_prefix(), pipelined=pipelined),
        sinks=[],
        catalog=JobCatalog(),
        concurrency=4,
        poll_interval=0.2,
    )
    queue.register("path", lambda job: handled.append(job.payload["i"]))
    async with queue:
        await queue.enqueue_many([("path", {"i": i}) for i in range(30)])
        await queue.start()
        await wait_until(lambda: len(handled) == 30, message="30 jobs handled")

        async def all_completed() -> bool:
            return (await queue.counts())["default"][JobStatus.COMPLETED] == 30

        await wait_until(all_completed, message="30 jobs recorded as completed")
        assert_transport(queue.backend, pipelined)


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined-channel", "redis-py-only"])
@run_async()
async def test_wake_ups_while_closing_never_find_the_client_closed(
    pipelined: bool, redis_backend_factory: BackendFactory
) -> None:
    """The wake-up that ends a blocked wait runs in the background. Asked for while the backend closes (a
    job enqueued as the worker stops), it must neither fail on the closed client (it did, logged as "Task
    exception was never retrieved") nor outlive close()."""
    backend = redis_backend_factory(pipelined=pipelined)
    queue = JobQueue(backend, sinks=[], catalog=JobCatalog(), poll_interval=0.2)
    wake_ups: set[asyncio.Task[None]] = set()
    async with queue:
        await queue.start()
        await wait_until(lambda: backend._consumed, message="the worker consuming")
        closing = asyncio.ensure_future(backend.close())
        while not closing.done():
            backend.wake()
            wake_ups.update(backend._background)
            await asyncio.sleep(0)
        await closing
    results = await asyncio.gather(*wake_ups, return_exceptions=True)
    assert [result for result in results if isinstance(result, BaseException)] == []
    assert all(task.done() for task in wake_ups) and not backend._background


def assert_transport(backend: Any, pipelined: bool) -> None:
    """The calls went over the transport the ``pipelined`` switch chose, and only over it: the channel
    carried every push, lease and settle, or not a single command."""
    assert isinstance(backend, RedisBackend)
    if pipelined:
        assert backend.transport == "pipelined"
        assert backend.channel_calls > 0
    else:
        assert backend.transport == "redis-py"
        assert backend.channel_calls == 0


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined-channel", "redis-py-only"])
@run_async()
async def test_tls_with_an_acl_user(
    pipelined: bool, tls_redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    handled: list[int] = []
    prefix = unique_prefix()
    queue = open_queue(
        "redis",
        url=tls_redis_server.url,
        prefix=prefix,
        pipelined=pipelined,
        sinks=[],
        catalog=JobCatalog(),
        concurrency=4,
        poll_interval=0.2,
    )
    assert "app-secret" not in queue.backend.location
    queue.register("secure", lambda job: handled.append(job.payload["i"]))
    async with queue:
        await queue.enqueue_many([("secure", {"i": i}) for i in range(20)])
        await queue.start()
        await wait_until(lambda: len(handled) == 20, message="20 jobs handled over TLS")
        await queue.stop()
        consumer = RedisBackend(url=tls_redis_server.url, prefix=prefix, pipelined=pipelined)
        await consumer.open()
        try:
            waiting = asyncio.create_task(consumer.lease(queues=["other"], limit=1, lease_ms=1000, wait=5))
            await blocked(consumer, "other")
            job = await queue.enqueue("secure", {"i": 99}, queue="other")  # handed over to the blocked wait
            (delivery,) = await asyncio.wait_for(waiting, 5)
            assert delivery.id == job.id
            assert_transport(queue.backend, pipelined)
            assert_transport(consumer, pipelined)
            await delivery.ack()
        finally:
            await consumer.close()


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined-channel", "redis-py-only"])
@run_async()
async def test_a_sentinel_url_finds_the_primary(
    pipelined: bool, redis_sentinel: Any, unique_prefix: Callable[[], str]
) -> None:
    handled: list[int] = []
    queue = open_queue(
        "redis",
        url=redis_sentinel.url,
        prefix=unique_prefix(),
        pipelined=pipelined,
        sinks=[],
        catalog=JobCatalog(),
        concurrency=4,
        poll_interval=0.2,
    )
    queue.register("watched", lambda job: handled.append(job.payload["i"]))
    async with queue:
        jobs = await queue.enqueue_many([("watched", {"i": i}) for i in range(10)])
        await queue.start()
        await wait_until(lambda: len(handled) == 10, message="10 jobs handled through Sentinel")
        assert_transport(queue.backend, pipelined)
    with redis_sentinel.primary.client() as client:  # they really are on the primary the Sentinel named
        assert client.exists(queue.backend.keys.job(jobs[0].id)) == 1


@run_async()
async def test_a_wrong_password_is_a_clear_error(tls_redis_server: Any) -> None:
    url = tls_redis_server.url.replace("app-secret", "wrong-password")
    backend = RedisBackend(url=url)
    with pytest.raises((ConnectionError, redis.exceptions.AuthenticationError)) as raised:
        await backend.open()
    assert "wrong-password" not in str(raised.value)


# -- Redis Cluster -----------------------------------------------------------------------------------------


@run_async()
async def test_redis_job_queue_on_a_caller_owned_cluster_client(
    redis_cluster: Any, unique_prefix: Callable[[], str]
) -> None:
    node = redis_cluster.nodes[0]
    client = RedisCluster(host="127.0.0.1", port=node.port)
    handled: list[str] = []
    queue = RedisJobQueue(
        redis=client, prefix=unique_prefix(), sinks=[], catalog=JobCatalog(), poll_interval=0.2
    )
    queue.register("clustered", lambda job: handled.append(job.id))
    async with queue:
        jobs = await queue.enqueue_many([("clustered", {}) for _ in range(50)])
        await queue.start()
        await wait_until(lambda: len(handled) == 50, message="50 jobs handled on the cluster")
    assert sorted(handled) == sorted(job.id for job in jobs)
    await client.aclose()


# -- the event sink ----------------------------------------------------------------------------------------


@run_async()
async def test_the_event_sink_publishes_lifecycle_events_as_json(
    redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    channel = f"events-{uuid.uuid4().hex[:8]}"
    listener = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    pubsub = listener.pubsub()
    await pubsub.subscribe(channel)
    sink = RedisEventSink(url=redis_server.url, channel=channel)
    queue = open_queue(
        "redis",
        url=redis_server.url,
        prefix=unique_prefix(),
        sinks=[sink],
        catalog=JobCatalog(),
        poll_interval=0.2,
    )
    queue.register("observed", lambda job: None)
    received: list[dict[str, Any]] = []
    async with queue:
        job = await queue.enqueue("observed", {"secret": "not in events"})
        await queue.start()

        async def completed() -> bool:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                received.append(json.loads(message["data"]))
            return any(event["event"] == JobCompleted.name for event in received)

        await wait_until(completed, message="job.completed published")
    await pubsub.aclose()
    await listener.aclose()
    names = [event["event"] for event in received if event.get("job_id") == job.id]
    assert names == ["job.enqueued", "job.started", "job.completed"]
    assert all("not in events" not in json.dumps(event) for event in received)


def test_the_plugin_registers_the_backend_and_the_sink() -> None:
    from lssm_jobs.plugins import load_plugins

    registry = load_plugins()
    assert registry.queue_backend("redis").factory == RedisBackend.from_options
    assert registry.event_sink("redis").factory == RedisEventSink.from_options
    info = {plugin.name: plugin for plugin in registry.plugins()}["redis"]
    assert info.distribution == "lssm-jobs-redis"


def test_sync_client_fixture_is_isolated(redis_server: Any) -> None:
    with redis_server.client() as client:
        assert isinstance(client, redis.Redis) and client.ping()
