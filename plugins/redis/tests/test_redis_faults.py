"""A user's worst day on Redis: records written by hand (or by something else sharing the prefix) that the
backend cannot read, a Redis full to its ``maxmemory``, dead letters replayed against live dedupe keys,
passwords with an ``@``, prefixes that differ only by a ``:``, heartbeats racing a job's own settle.

Corrupt records are written straight into a real redis-server with redis-py; the rule they check: a record
that cannot be read goes to the dead letter queue with the reason (or is dropped with a warning when nothing
of it is a job), and never affects the other jobs of its batch.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from lssm_jobs.backends.base import Delivery, OutgoingJob
from lssm_jobs.cli import main as cli_main
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import open_queue
from lssm_jobs.scheduler.stores import SchedulerStore
from lssm_jobs.testing import opened, run_async, wait_until
from lssm_jobs_redis import RedisBackend, RedisSchedulerStore
from redis.exceptions import OutOfMemoryError

BackendFactory = Callable[..., RedisBackend]
RedisServer = Any  # conftest.RedisServer: url, port, client()


def outgoing(
    *,
    queue: str = "default",
    priority: int = 0,
    delay: float = 0.0,
    dedupe: str | None = None,
    body: bytes | None = None,
) -> OutgoingJob:
    now = time.time()
    job_id = uuid.uuid4().hex
    return OutgoingJob(
        id=job_id,
        type="t",
        queue=queue,
        priority=priority,
        run_at=now + delay,
        created_at=now,
        dedupe_key=dedupe,
        body=body if body is not None else job_id.encode(),
    )


@pytest.fixture(params=[True, False], ids=["functions", "scripts"])
def backend_factory(request: pytest.FixtureRequest, redis_backend_factory: BackendFactory) -> BackendFactory:
    """Backends of one prefix, with the code as a function library and as EVALSHA scripts (Redis 6.2)."""
    return lambda **options: redis_backend_factory(functions=request.param, **options)


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING)


# -- records that cannot be read ---------------------------------------------------------------------------


def corrupt(client: redis.Redis, backend: RedisBackend, job_id: str, how: str) -> None:
    """Damage a stored job the way a hand edit (or another program) would."""
    if how == "non-numeric attempts":
        client.hset(backend.keys.job(job_id), "a", "lots")
    elif how == "fractional token":
        client.hset(backend.keys.job(job_id), "k", "1.5")
    elif how == "record of another type":
        client.delete(backend.keys.job(job_id))
        client.set(backend.keys.job(job_id), "not a hash")
    elif how == "body missing":
        client.delete(backend.keys.body(job_id))
    elif how == "body of another type":
        client.delete(backend.keys.body(job_id))
        client.rpush(backend.keys.body(job_id), "not", "a", "string")
    elif how == "no status":
        client.hdel(backend.keys.job(job_id), "s")
    else:
        raise AssertionError(how)


DAMAGE = {
    "non-numeric attempts": "field a (attempts) is 'lots', not a whole number",
    "fractional token": "field k (lease token) is '1.5', not a whole number",
    "record of another type": "is not a hash",
    "body missing": "is missing",
    "body of another type": "holds a list",
    "no status": "has no status",
}


@run_async()
async def test_a_batch_with_unreadable_jobs_leases_every_healthy_one(
    backend_factory: BackendFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_factory()
    async with opened(backend):
        jobs = [outgoing() for _ in range(len(DAMAGE) * 2)]
        await backend.push(jobs)
        bad = {job.id: how for job, how in zip(jobs[1::2], DAMAGE, strict=True)}
        with redis_server.client() as client:
            for job_id, how in bad.items():
                corrupt(client, backend, job_id, how)
            stray = "no-such-job"
            client.rpush(backend.keys.queue("default", "line"), stray)  # an id with no record at all
            odd = jobs[0].id  # a number Lua reads and Python does not: get() says so, a lease rewrites it
            client.hset(backend.keys.job(odd), "a", "0x1f")
        with pytest.raises(ValueError, match="cannot be read"):
            await backend.get(odd)
        with pytest.raises(ValueError, match="cannot be read"):
            await backend.get(next(job_id for job_id, how in bad.items() if how == "non-numeric attempts"))

        leased = await backend.lease(queues=["default"], limit=100, lease_ms=10_000, wait=0)

        healthy = [job for job in jobs if job.id not in bad]
        assert [delivery.id for delivery in leased] == [job.id for job in healthy]
        assert leased[0].attempt == 32
        record = await backend.get(odd)
        assert record is not None and record.attempts == 32
        assert [delivery.body for delivery in leased] == [job.body for job in healthy]
        for delivery in leased:
            await delivery.ack()
        letters = {letter.id: letter for letter in await backend.list_dead()}
        assert set(letters) == {*bad, stray}
        for job_id, how in bad.items():
            letter = letters[job_id]
            assert letter.reason.startswith("unreadable job record: ") and DAMAGE[how] in letter.reason
            assert letter.queue == "default"
            # the body is kept whenever it was there to keep
            expected = b"" if how.startswith("body") else job_id.encode()
            assert letter.body == expected, how
            record = await backend.get(job_id)  # readable again: a dead letter
            assert record is not None and record.status is JobStatus.DEAD
        assert "it has no record" in letters[stray].reason and letters[stray].body == b""
        for job_id in bad:
            assert f"job {job_id} of queue default moved to the dead letter queue" in warnings_of(caplog)
        counts = await backend.counts()
        assert counts["default"][JobStatus.PENDING] == 0
        assert counts["default"][JobStatus.DEAD] == len(bad) + 1
        assert counts["default"][JobStatus.COMPLETED] == len(healthy)
        # values set aside are deleted with their dead letters
        assert await backend.purge_dead() == len(bad) + 1
        with redis_server.client() as client:
            assert not list(client.scan_iter(match=backend.keys.pattern.replace("*", "corrupt:*")))


@run_async(timeout=90)
async def test_a_worker_runs_every_readable_job_and_dead_letters_the_rest(
    redis_server: RedisServer, unique_prefix: Callable[[], str]
) -> None:
    done: set[str] = set()
    queue = open_queue(
        "redis", url=redis_server.url, prefix=unique_prefix(), sinks=[], catalog=JobCatalog(), concurrency=8
    )

    async def handler(job: Any) -> None:
        done.add(job.id)

    queue.register("work", handler)
    async with queue:
        jobs = await queue.enqueue_many([("work", {"n": n}) for n in range(200)])
        jobs += [await queue.enqueue("work", {"n": n}, priority=n % 3, queue=f"q{n % 2}") for n in range(40)]
        backend: Any = queue.backend
        bad = {job.id: how for job, how in zip(jobs[::12], [*DAMAGE] * 5, strict=False)}
        with redis_server.client() as client:
            for job_id, how in bad.items():
                corrupt(client, backend, job_id, how)
        await queue.start()
        await wait_until(
            lambda: len(done) == len(jobs) - len(bad), timeout=60, message="every readable job run"
        )
        assert done == {job.id for job in jobs} - set(bad)
        letters = await queue.dead_letters.list(limit=1000)
        assert {letter.id for letter in letters} == set(bad)
        await queue.stop()


@run_async()
async def test_leasing_across_queues_skips_what_cannot_be_read(
    backend_factory: BackendFactory, redis_server: RedisServer
) -> None:
    backend = backend_factory()
    async with opened(backend):
        jobs = [outgoing(queue=queue, priority=priority) for queue in ("a", "b") for priority in (0, 3, 0)]
        await backend.push(jobs)
        with redis_server.client() as client:
            corrupt(client, backend, jobs[1].id, "non-numeric attempts")  # a, priority 3
            corrupt(client, backend, jobs[3].id, "body missing")  # b, priority 0
            client.zadd(backend.keys.queue("b", "ready"), {"x": -5})  # first in b's order, not a job
            client.rpush(backend.keys.queue("a", "line"), "")
        leased = await backend.lease(queues=None, limit=10, lease_ms=10_000, wait=0)
        # priority first (b's 3 before a's 0s), then creation time; the bad ones are skipped
        assert [delivery.id for delivery in leased] == [jobs[4].id, jobs[0].id, jobs[2].id, jobs[5].id]
        assert {letter.id for letter in await backend.list_dead()} == {jobs[1].id, jobs[3].id}
        counts = await backend.counts()
        assert counts["a"][JobStatus.PENDING] == counts["b"][JobStatus.PENDING] == 0


@run_async()
async def test_unreadable_jobs_among_expired_leases_and_due_delayed_jobs(
    backend_factory: BackendFactory, redis_server: RedisServer
) -> None:
    backend = backend_factory()
    async with opened(backend):
        active = [outgoing() for _ in range(3)]
        await backend.push(active)
        await backend.lease(queues=None, limit=3, lease_ms=1, wait=0)  # leases that expire at once
        delayed = [outgoing(delay=0.05) for _ in range(3)]
        await backend.push(delayed)
        with redis_server.client() as client:
            corrupt(client, backend, active[1].id, "record of another type")
            client.hset(backend.keys.job(delayed[1].id), "p", "high")
        await asyncio.sleep(0.06)  # the delayed jobs come due (server clock)
        leased = await wait_until(
            lambda: backend.lease(queues=None, limit=10, lease_ms=10_000, wait=0),
            message="the expired and due jobs leased",
        )
        expected = {active[0].id, active[2].id, delayed[0].id, delayed[2].id}
        while len({delivery.id for delivery in leased}) < len(expected):
            leased += await backend.lease(queues=None, limit=10, lease_ms=10_000, wait=0.2)
        assert {delivery.id for delivery in leased} == expected
        letters = {letter.id: letter.reason for letter in await backend.list_dead()}
        assert set(letters) == {active[1].id, delayed[1].id}
        assert "is not a hash" in letters[active[1].id]
        assert "field p (priority) is 'high', not an integer" in letters[delayed[1].id]


@run_async()
async def test_an_unreadable_job_never_reaches_an_idle_consumer(
    backend_factory: BackendFactory, redis_server: RedisServer
) -> None:
    consumer, producer = backend_factory(), backend_factory()
    async with opened(consumer), opened(producer):
        (first,) = await producer.push([outgoing(queue="handoff")])
        with redis_server.client() as client:
            corrupt(client, producer, first.id, "body missing")
        # the consumer finds nothing it can run (the bad job is dead-lettered), blocks, and is handed the
        # next job by the producer's push (which meets no bad job in front of it)
        waiting = asyncio.ensure_future(consumer.lease(queues=["handoff"], limit=1, lease_ms=10_000, wait=10))
        await wait_until(
            lambda: consumer.client.zcard(consumer.keys.queue("handoff", "idlers")),
            message="the consumer blocked",
        )
        with redis_server.client() as client:  # another bad job, written while the consumer waits
            client.rpush(consumer.keys.queue("handoff", "line"), "written-by-hand")
        job = outgoing(queue="handoff")
        await producer.push([job])
        (delivery,) = await asyncio.wait_for(waiting, 10)
        assert delivery.id == job.id
        assert {letter.id for letter in await producer.list_dead()} == {first.id, "written-by-hand"}


@run_async()
async def test_settling_a_job_whose_record_was_damaged_meanwhile(
    backend_factory: BackendFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_factory()
    async with opened(backend):
        jobs = [outgoing() for _ in range(5)]
        await backend.push(jobs)
        leased = await backend.lease(queues=None, limit=5, lease_ms=10_000, wait=0)
        with redis_server.client() as client:
            corrupt(client, backend, jobs[1].id, "record of another type")
            corrupt(client, backend, jobs[2].id, "non-numeric attempts")  # a release needs it
            corrupt(client, backend, jobs[3].id, "non-numeric attempts")  # an ack does not
        # one settle call for all five (coalesced): the damaged ones must not stop the others
        await asyncio.gather(
            leased[0].ack(), leased[1].ack(), leased[2].release(), leased[3].ack(), leased[4].ack()
        )
        for job in (jobs[0], jobs[4]):
            record = await backend.get(job.id)
            assert record is not None and record.status is JobStatus.COMPLETED
        letters = {letter.id: letter for letter in await backend.list_dead()}
        assert set(letters) == {jobs[1].id, jobs[2].id}
        assert "(found when a worker settled it: ack)" in letters[jobs[1].id].reason
        assert "(found when a worker settled it: release)" in letters[jobs[2].id].reason
        assert letters[jobs[2].id].body == jobs[2].body
        with redis_server.client() as client:
            assert client.hget(backend.keys.job(jobs[3].id), "s") == b"completed"
        assert f"ack of job {jobs[1].id} not applied: its record in Redis could not be read" in warnings_of(
            caplog
        )


@run_async()
async def test_damaged_entries_and_keys_of_another_type_are_set_aside(
    backend_factory: BackendFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_factory()
    keys = backend.keys
    with redis_server.client() as client:
        client.set(keys.queue("q", "line"), "a string where a list belongs")
        client.set(keys.dead, "a string where a sorted set belongs")
        client.set(keys.dedupe, "a string where a hash belongs")
        client.hset(keys.dead_counts, "q", "many")
        client.set(keys.seq, "not a counter")
        client.zadd(keys.queue("q", "ready"), {"short": 0})  # not <16 hex digits><id>
        client.rpush(keys.queue("q", "done"), "not an entry")
    async with opened(backend):
        results = await backend.push([outgoing(queue="q", dedupe="d"), outgoing(queue="q", priority=5)])
        assert all(result.created for result in results)
        leased = await backend.lease(queues=["q"], limit=10, lease_ms=10_000, wait=0)
        assert [delivery.id for delivery in leased] == [results[1].id, results[0].id]
        await leased[0].dead_letter(reason="test", error=None, traceback=None)
        await leased[1].ack()
        assert [letter.id for letter in await backend.list_dead()] == [results[1].id]
        assert (await backend.counts())["q"][JobStatus.DEAD] == 1
        assert await backend.lease(queues=["q"], limit=10, lease_ms=10_000, wait=0) == []  # prunes `done`
    text = warnings_of(caplog)
    for key in (keys.queue("q", "line"), keys.dead, keys.dedupe):
        assert f"key {key} held a string, not what lssm-jobs keeps there: moved to" in text
    assert "the dead letter count of queue q was not a number" in text
    assert "the ready-order counter" in text
    assert "dropped 'short' from a ready set" in text
    assert "dropped 'not an entry' from" in text
    with redis_server.client() as client:  # what was set aside is kept for inspection
        assert client.get(keys.base + "corrupt:dead") == b"a string where a sorted set belongs"


@run_async()
async def test_reading_never_fails_on_damaged_records(
    backend_factory: BackendFactory, redis_server: RedisServer
) -> None:
    backend = backend_factory()
    async with opened(backend):
        jobs = [outgoing(queue="r") for _ in range(3)]
        await backend.push(jobs)
        for delivery in await backend.lease(queues=None, limit=3, lease_ms=10_000, wait=0):
            await delivery.dead_letter(reason="failed", error="E", traceback=None)
        with redis_server.client() as client:
            corrupt(client, backend, jobs[0].id, "record of another type")
            corrupt(client, backend, jobs[1].id, "body of another type")
            client.hset(backend.keys.job(jobs[2].id), "a", "x")
            client.zadd(backend.keys.dead, {"ghost": 1})  # a dead letter with nothing stored
            client.set(backend.keys.queue("r", "active"), "a string")
            client.hset(backend.keys.job(jobs[1].id), "f", "0x10")
            client.sadd(backend.keys.queues, b"\xff")  # a queue name that is not UTF-8
        letters = {letter.id: letter for letter in await backend.list_dead()}
        assert set(letters) == {job.id for job in jobs} | {"ghost"}
        assert "its record" in letters[jobs[0].id].reason and "is not a hash" in letters[jobs[0].id].reason
        assert letters[jobs[1].id].body == b"" and "(failed)" in letters[jobs[1].id].reason
        assert letters[jobs[2].id].attempts == 0 and letters[jobs[2].id].body == jobs[2].body
        assert "it has no record" in letters["ghost"].reason
        assert (await backend.get_dead("ghost")) is not None
        assert letters[jobs[1].id].failed_at == 0
        counts = await backend.counts()
        assert counts["r"][JobStatus.ACTIVE] == 0 and counts["r"][JobStatus.DEAD] == 3
        assert counts[b"\xff".decode(errors="surrogateescape")][JobStatus.PENDING] == 0
        with pytest.raises(ValueError, match="cannot be replayed: its record"):
            await backend.replay_dead(jobs[0].id, run_at=time.time())
        assert await backend.replay_dead(jobs[2].id, run_at=time.time()) is True  # attempts are reset
        assert await backend.purge_dead() == 3


@run_async()
async def test_push_with_a_dedupe_key_held_by_an_unreadable_job(
    backend_factory: BackendFactory, redis_server: RedisServer
) -> None:
    backend = backend_factory()
    async with opened(backend):
        (first,) = await backend.push([outgoing(dedupe="once")])
        with redis_server.client() as client:
            corrupt(client, backend, first.id, "record of another type")
        (second,) = await backend.push([outgoing(dedupe="once")])
        assert second.created and second.id != first.id


@run_async()
async def test_a_stopping_consumer_gives_back_what_it_can_read(
    backend_factory: BackendFactory, redis_server: RedisServer
) -> None:
    consumer, producer = backend_factory(), backend_factory()
    async with opened(producer):
        await consumer.open()
        waiting = asyncio.ensure_future(consumer.lease(queues=["g"], limit=1, lease_ms=10_000, wait=0.3))
        await wait_until(
            lambda: consumer.client.zcard(consumer.keys.queue("g", "idlers")), message="consumer blocked"
        )
        job = outgoing(queue="g")
        with redis_server.client() as client:
            # a hand-off entry that is not a delivery lands in the list before the real one
            client.rpush(consumer.keys.handoff(consumer.consumer_id), "garbage")
        await producer.push([job])
        assert await asyncio.wait_for(waiting, 10) == []  # "garbage" woke it; the job waits in its list
        await consumer.close()  # gives the handed job back; the garbage entry is dropped
        (delivery,) = await producer.lease(queues=["g"], limit=1, lease_ms=10_000, wait=0)
        assert (delivery.id, delivery.attempt) == (job.id, 1)


@run_async()
async def test_the_scheduler_store_reads_around_damaged_rows_and_claims(
    redis_server: RedisServer, unique_prefix: Callable[[], str]
) -> None:
    store: SchedulerStore = RedisSchedulerStore(url=redis_server.url, prefix=unique_prefix())
    keys = store.keys  # type: ignore[attr-defined]
    await store.open()
    try:
        now = time.time()
        for name in ("a", "b", "c"):
            await store.ensure(name, now=now)
        assert await store.claim("a", now + 1, owner="me", now=now, next_tick=None)
        assert await store.claim("b", now + 1, owner="me", now=now, next_tick=None)
        with redis_server.client() as client:
            client.hset(keys.base + "cron:s:b", "l", "yesterday")
            client.hset(keys.base + "cron:s:c", "u", "soon")
            client.hset(keys.base + "cron:c:a", repr(now + 1), "garbage")
        assert [state.name for state in await store.states()] == ["a"]
        assert [claim.schedule for claim in await store.unfinished_claims()] == ["b"]
        assert await store.claims("a") == []
        assert not await store.complete("a", now + 1, owner="me", now=now)
        state = await store.ensure("c", now=now)  # written again
        assert state.name == "c" and not state.paused
        assert await store.claim("b", now + 2, owner="me", now=now, next_tick=None)  # last tick unreadable
    finally:
        await store.close()


# -- a full Redis ------------------------------------------------------------------------------------------


def fill(server: RedisServer, *, filler_bytes: int = 2 * 1024 * 1024) -> None:
    """Fill the server with junk, then cap its memory well below what it uses: it refuses every write that
    may grow memory, as a Redis that filled up does, until the junk is deleted (:func:`drain_filler`)."""
    with server.client() as client:
        client.config_set("maxmemory", 0)
        pipe = client.pipeline(transaction=False)
        for filler in range(filler_bytes // 4096):
            pipe.set(f"filler:{filler}", b"x" * 4096)
        pipe.execute()
    # measured from another connection: the filling one's input buffer was freed with it
    with server.client() as client:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used - 256 * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("one-more", "x")


def drain_filler(server: RedisServer) -> None:
    """Free what :func:`fill` took (the connections opened since may have taken some of it)."""
    with server.client() as client:
        client.delete(*client.scan_iter(match="filler:*", count=1000))


@pytest.mark.parametrize("functions", [True, False], ids=["functions", "scripts"])
@run_async(timeout=120)
async def test_a_full_redis_refuses_new_jobs_but_lets_workers_finish_theirs(
    small_redis_server: RedisServer, functions: bool, caplog: pytest.LogCaptureFixture
) -> None:
    url = small_redis_server.url
    worker = RedisBackend(url=url, prefix="jobs:", functions=functions, completed_ttl_ms=0)
    producer = RedisBackend(url=url, prefix="jobs:", functions=functions)
    async with opened(worker), opened(producer):
        jobs = [outgoing(body=b"x" * 200) for _ in range(6)]
        await producer.push(jobs)
        held = await worker.lease(queues=None, limit=5, lease_ms=10_000, wait=0)
        assert len(held) == 5
        fill(small_redis_server)

        # producers: one clear error, nothing stored
        with small_redis_server.client() as client:
            before = client.dbsize()
        with pytest.raises(OutOfMemoryError, match=r"is full .* the job was not stored"):
            await producer.push([outgoing()])
        with pytest.raises(OutOfMemoryError):
            await producer.push([outgoing() for _ in range(3)])
        pusher = producer.blocking_pusher()
        assert pusher is not None
        with pytest.raises(OutOfMemoryError, match="is full"):
            await asyncio.to_thread(pusher, [outgoing()])
        with small_redis_server.client() as client:
            assert client.dbsize() == before

        # workers: every settle applies, reads work, a new worker opens and leases
        assert await held[0].extend(20_000) is True
        await held[0].ack()
        await held[1].retry(run_at=time.time(), error="E")
        await held[2].dead_letter(reason="failed", error="E", traceback="T" * 2000)
        await held[3].release()
        await held[4].ack()
        assert (await worker.counts())["default"][JobStatus.DEAD] == 1
        assert [letter.id for letter in await worker.list_dead()] == [held[2].id]
        newcomer = RedisBackend(url=url, prefix="jobs:", functions=functions)
        async with opened(newcomer):
            leased = await newcomer.lease(queues=None, limit=10, lease_ms=10_000, wait=0)
            assert {delivery.id for delivery in leased} == {held[1].id, held[3].id, jobs[5].id}
            for delivery in leased:
                await delivery.ack()
        assert await worker.purge_dead() == 1
        assert "cannot reach" not in warnings_of(caplog)

        # memory freed: producers work again, by themselves
        drain_filler(small_redis_server)
        (stored,) = await producer.push([outgoing()])
        assert stored.created
    await worker.close()  # closing twice, and after a full Redis, never raises


@run_async(timeout=120)
async def test_a_worker_starting_on_a_full_redis_that_lost_the_code_uses_scripts(
    small_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = small_redis_server.url
    producer = RedisBackend(url=url, prefix="jobs:")
    async with opened(producer):
        (job,) = await producer.push([outgoing()])
    with small_redis_server.client() as client:
        client.function_flush()
        client.script_flush()
    fill(small_redis_server)
    worker = RedisBackend(url=url, prefix="jobs:")
    async with opened(worker):  # FUNCTION LOAD is refused on a full Redis; SCRIPT LOAD is not
        (delivery,) = await worker.lease(queues=None, limit=1, lease_ms=10_000, wait=0)
        assert delivery.id == job.id
        await delivery.ack()
        with small_redis_server.client() as client:
            client.function_flush()  # lost again while running (a failover): the worker carries on
            client.script_flush()
        assert (await worker.counts())["default"][JobStatus.COMPLETED] == 1


@run_async(timeout=120)
async def test_jobs_complete_while_redis_is_full_and_new_ones_once_it_has_room(
    small_redis_server: RedisServer,
) -> None:
    done: list[int] = []
    queue = open_queue(
        "redis",
        url=small_redis_server.url,
        prefix="jobs:",
        sinks=[],
        catalog=JobCatalog(),
        lease_ms=2000,
        completed_ttl_ms=0,
    )

    async def handler(job: Any) -> None:
        done.append(job.payload["n"])

    queue.register("work", handler)
    async with queue:
        for n in range(20):
            await queue.enqueue("work", {"n": n})
        fill(small_redis_server)
        with pytest.raises(OutOfMemoryError):
            await queue.enqueue("work", {"n": -1})
        await queue.start()
        await wait_until(lambda: len(done) == 20, timeout=30, message="every job done on a full Redis")
        drain_filler(small_redis_server)
        await queue.enqueue("work", {"n": 20})
        await wait_until(lambda: len(done) == 21, timeout=30, message="a new job done once there is room")
        await queue.stop()
    assert sorted(done) == list(range(21))


@run_async()
async def test_open_says_when_redis_refuses_the_code(own_redis_server: RedisServer) -> None:
    with own_redis_server.client() as client:
        client.acl_setuser(
            "noscripts", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-@scripting"]
        )
    url = f"redis://noscripts:pw@127.0.0.1:{own_redis_server.port}/0"
    backend = RedisBackend(url=url, prefix="jobs:")
    with pytest.raises(ConnectionError) as raised:
        await backend.open()
    message = str(raised.value)
    assert "refused to load lssm-jobs' code" in message and "no permissions" in message
    assert "cannot reach" not in message and ":pw@" not in message


# -- replay and dedupe -------------------------------------------------------------------------------------


@run_async()
async def test_replay_honours_run_at_and_keeps_the_dedupe_key(backend_factory: BackendFactory) -> None:
    backend = backend_factory()
    async with opened(backend):
        (job,) = await backend.push([outgoing(dedupe="nightly")])
        (delivery,) = await backend.lease(queues=None, limit=1, lease_ms=10_000, wait=0)
        await delivery.dead_letter(reason="failed", error=None, traceback=None)
        assert await backend.replay_dead(job.id, run_at=time.time() + 3600) is True
        record = await backend.get(job.id)
        assert record is not None and record.status is JobStatus.SCHEDULED and record.dedupe_key == "nightly"
        assert record.run_at > time.time() + 3500
        (again,) = await backend.push([outgoing(dedupe="nightly")])
        assert (again.id, again.created) == (job.id, False)


@run_async()
async def test_replay_through_the_queue_reports_a_live_dedupe_holder(
    redis_server: RedisServer, unique_prefix: Callable[[], str]
) -> None:
    queue = open_queue("redis", url=redis_server.url, prefix=unique_prefix(), sinks=[], catalog=JobCatalog())
    async with queue:
        job = await queue.enqueue("report.build", {}, dedupe_key="weekly")
        backend: Any = queue.backend
        (delivery,) = await backend.lease(queues=None, limit=1, lease_ms=10_000, wait=0)
        await delivery.dead_letter(reason="failed", error=None, traceback=None)
        live = await queue.enqueue("report.build", {}, dedupe_key="weekly")
        with pytest.raises(DedupeConflictError) as raised:
            await queue.dead_letters.replay(job.id)
        assert raised.value.live_job_id == live.id
        assert (await queue.dead_letters.get(job.id)) is not None


# -- secrets in URLs ---------------------------------------------------------------------------------------


def test_the_cli_never_prints_a_password_with_an_at_sign(
    own_redis_server: RedisServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with own_redis_server.client() as client:
        client.acl_setuser("app", enabled=True, passwords=["+p@ss:w@rd"], keys=["*"], commands=["+@all"])
    port = own_redis_server.port
    good = f"redis://app:p@ss:w@rd@127.0.0.1:{port}/0"  # unencoded, as users paste it
    assert cli_main(["status", "--backend", "redis", "--url", good, "--json"]) == 0  # the client parses it
    wrong = f"redis://app:p@ss:w@rdX@127.0.0.1:{port}/0"
    assert cli_main(["status", "--backend", "redis", "--url", wrong]) == 1
    unreachable = f"redis://app:p@ss:w@rd@127.0.0.1:{free_port_nobody_uses()}/0"
    assert (
        cli_main(["status", "--backend", "redis", "--url", unreachable, "--option", "reconnect_timeout=0"])
        == 1
    )
    output = capsys.readouterr()
    text = output.out + output.err + "\n".join(record.getMessage() for record in caplog.records)
    assert "app:***@127.0.0.1" in text
    for secret in ("p@ss", "w@rd", "ss:w", "rdX", "@rd"):
        assert secret not in text, text
    backend = RedisBackend(url=unreachable)
    assert "w@rd" not in repr(backend) + backend.location


def free_port_nobody_uses() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- prefixes ------------------------------------------------------------------------------------------------


@run_async()
async def test_prefixes_differing_by_a_colon_are_independent(
    redis_server: RedisServer, unique_prefix: Callable[[], str]
) -> None:
    name = unique_prefix().rstrip(":")
    plain = RedisBackend(url=redis_server.url, prefix=name)
    colon = RedisBackend(url=redis_server.url, prefix=name + ":")
    async with opened(plain), opened(colon):
        (one,) = await plain.push([outgoing()])
        (other,) = await colon.push([outgoing()])
        assert [d.id for d in await plain.lease(queues=None, limit=5, lease_ms=10_000, wait=0)] == [one.id]
        assert [d.id for d in await colon.lease(queues=None, limit=5, lease_ms=10_000, wait=0)] == [other.id]
        assert await plain.get(other.id) is None and await colon.get(one.id) is None
        with redis_server.client() as client:
            plain_keys = set(client.scan_iter(match=plain.keys.pattern, count=1000))
            colon_keys = set(client.scan_iter(match=colon.keys.pattern, count=1000))
        assert plain_keys and colon_keys and not plain_keys & colon_keys


# -- heartbeats racing a job's own settle ------------------------------------------------------------------


@run_async()
async def test_extend_racing_the_jobs_own_settle_is_not_a_lost_lease(
    backend_factory: BackendFactory, caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_factory()
    async with opened(backend):
        await backend.push([outgoing() for _ in range(4)])
        leased: list[Delivery] = await backend.lease(queues=None, limit=4, lease_ms=10_000, wait=0)
        # the settle and the heartbeat's extend in one settle call, settle first
        results = await asyncio.gather(
            leased[0].ack(),
            leased[0].extend(10_000),
            leased[1].retry(run_at=time.time(), error="E"),
            leased[1].extend(10_000),
        )
        # settled by this delivery: no lease left to extend (the contract), and nothing logged as lost
        assert results[1] is False and results[3] is False
        # an extend sent after the settle returned (a heartbeat that collected the delivery just before)
        settled: Any = leased[2]
        await settled.dead_letter(reason="r", error=None, traceback=None)
        assert await backend._settler.submit(("extend", settled, 10_000)) == 2  # "settled by this token"
        await leased[3].ack()
        await leased[3].ack()  # a repeated settle (a retry after a lost reply) is quiet too
        assert "ignored" not in warnings_of(caplog)


# -- a connection torn down under a command (Redis Cluster node restarts) ----------------------------------------


async def _torn_attribute_error() -> AttributeError:
    """The error redis-py raises when a command writes on a connection another task disconnected meanwhile
    (its writer is gone): raised by redis-py's own code, as during a cluster node restart."""
    from redis.asyncio.connection import Connection

    connection = Connection()  # never connected: no writer, as after a disconnect under the command
    try:
        await connection._send_packed_command([b"PING"])
    except AttributeError as error:
        return error
    raise AssertionError("redis-py no longer raises AttributeError here; drop the torn-connection handling?")


def test_a_torn_connection_is_told_from_other_attribute_errors() -> None:
    from lssm_jobs_redis.backend import is_transient
    from lssm_jobs_redis.connection import torn_connection

    torn = asyncio.run(_torn_attribute_error())
    assert "writelines" in str(torn)
    assert torn_connection(torn) and is_transient(torn)
    writer: Any = None
    try:
        writer.writelines([b"PING"])  # the same mistake, made by our own code
    except AttributeError as ours:
        assert not torn_connection(ours) and not is_transient(ours)
    else:
        raise AssertionError("expected an AttributeError")
    assert not torn_connection(AttributeError("no traceback"))


@run_async()
async def test_an_operation_is_repeated_through_a_torn_connection(
    redis_backend_factory: Callable[..., RedisBackend],
) -> None:
    """What the backend does through an outage it does through a torn connection: the operation is repeated
    (and succeeds) instead of failing with redis-py's AttributeError, and so do the script calls of the
    ledger, the scheduler store and the live workers (through ``evalsha``)."""
    from lssm_jobs_redis.scripts import LuaScript, evalsha

    async with opened(redis_backend_factory()) as backend:
        calls = 0

        async def counts_after_a_torn_connection() -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise await _torn_attribute_error()
            return await backend.client.ping()

        assert await backend._call("counts", counts_after_a_torn_connection) is True
        assert calls == 2

        class TornClient:
            async def evalsha(self, *args: Any) -> Any:
                raise await _torn_attribute_error()

        with pytest.raises(redis.exceptions.ConnectionError, match="torn down"):
            await evalsha(TornClient(), LuaScript.load("workers"), "k", [])
