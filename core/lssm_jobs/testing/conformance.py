"""The backend conformance suite: one contract, run over every backend (ours and third parties').

Subclass :class:`BackendConformance` in a test module and provide the ``lssm_jobs_backend_factory``
fixture. Tests of features a backend does not declare in its capabilities are skipped, saying which.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest

from lssm_jobs.backends.base import OutgoingJob, PullBackend, QueueBackend
from lssm_jobs.errors import JobValidationError, PermanentJobError, RetryJob
from lssm_jobs.events import Event
from lssm_jobs.jobs import Job, JobCatalog, JobOptions, JobStatus, JobType, define_job_type
from lssm_jobs.queue import JobQueue
from lssm_jobs.testing.helpers import run_async, wait_until

BackendFactory = Callable[[], QueueBackend]

_names = itertools.count()


def _type_name(prefix: str) -> str:
    return f"conformance.{prefix}.{next(_names)}.{uuid.uuid4().hex[:6]}"


@attrs.frozen
class Greeting:
    name: str
    times: int = 1


class _Recorder:
    """Collects events and handler calls of one test."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.calls: list[Job[Any]] = []

    def event(self, event: Event) -> None:
        self.events.append(event)

    def named(self, name: str, job_id: str | None = None) -> list[Event]:
        return [
            event
            for event in self.events
            if event.name == name and (job_id is None or getattr(event, "job_id", None) == job_id)
        ]


def _no_jitter(**overrides: Any) -> JobOptions:
    return JobOptions(**{"jitter": 0.0, "backoff": "fixed", "backoff_ms": 50, **overrides})


def _broken_callback(event: Event) -> None:
    raise RuntimeError("a subscriber bug")


class BackendConformance:
    """The contract every queue backend meets. Requires fixture ``lssm_jobs_backend_factory``."""

    #: Overridable knobs for slow services (seconds / milliseconds).
    conformance_timeout: float = 60.0
    lease_ms: int = 1_000
    poll_interval: float = 0.05

    # -- harness ----------------------------------------------------------------------------------------------

    @staticmethod
    def _capabilities(factory: BackendFactory) -> Any:
        return type(factory()).capabilities

    def _require(self, factory: BackendFactory, *names: str) -> None:
        capabilities = self._capabilities(factory)
        for name in names:
            if not getattr(capabilities, name):
                pytest.skip(f"backend does not declare the {name!r} capability")

    @asynccontextmanager
    async def _queue(
        self, factory: BackendFactory, catalog: JobCatalog | None = None, **options: Any
    ) -> AsyncIterator[JobQueue]:
        settings: dict[str, Any] = {
            "lease_ms": self.lease_ms,
            "poll_interval": self.poll_interval,
            "shutdown_timeout": 5.0,
            "sinks": [],
        }
        settings.update(options)
        queue = JobQueue(factory(), catalog=catalog if catalog is not None else JobCatalog(), **settings)
        try:
            await queue.open()
            yield queue
        finally:
            await queue.close()

    @staticmethod
    async def _status(queue: JobQueue, job_id: str, *statuses: JobStatus, timeout: float = 10.0) -> Job[Any]:
        async def reached() -> Job[Any] | None:
            job = await queue.get(job_id)
            return job if job is not None and job.status in statuses else None

        result: Job[Any] = await wait_until(
            reached, timeout=timeout, message=f"job {job_id} in {[s.value for s in statuses]}"
        )
        return result

    # -- enqueue and consume --------------------------------------------------------------------------------

    @run_async()
    async def test_enqueue_then_consume(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        catalog = JobCatalog()
        greet = define_job_type(type=_type_name("greet"), payload=Greeting, catalog=catalog)
        recorder = _Recorder()
        async with self._queue(lssm_jobs_backend_factory, catalog) as queue:
            queue.register(greet, lambda job: recorder.calls.append(job))
            jobs = [await queue.enqueue(greet, Greeting(name=f"n{i}")) for i in range(5)]
            jobs.append(await queue.enqueue(greet.type, {"name": "by-name", "times": 2}))
            assert all(job.status is JobStatus.PENDING for job in jobs)
            assert len({job.id for job in jobs}) == len(jobs)
            stored = await queue.get(jobs[0].id)
            assert stored is not None and stored.payload == Greeting(name="n0")
            await queue.start()
            await wait_until(lambda: len(recorder.calls) == len(jobs), message="every job handled")
            for job in jobs:
                done = await self._status(queue, job.id, JobStatus.COMPLETED)
                assert done.attempt == 1
            assert {call.payload for call in recorder.calls} >= {Greeting(name="by-name", times=2)}
            assert all(isinstance(call.payload, Greeting) for call in recorder.calls)

    @run_async()
    async def test_get_unknown_job_is_none(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        async with self._queue(lssm_jobs_backend_factory) as queue:
            assert await queue.get(uuid.uuid4().hex) is None

    @run_async()
    async def test_enqueue_many(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("many")
        handled: set[int] = set()
        async with self._queue(lssm_jobs_backend_factory, concurrency=8) as queue:
            queue.register(name, lambda job: handled.add(job.payload["i"]))
            jobs = await queue.enqueue_many([(name, {"i": i}) for i in range(200)])
            assert len(jobs) == 200 and len({job.id for job in jobs}) == 200
            await queue.start()
            await wait_until(lambda: len(handled) == 200, timeout=30, message="200 jobs handled")

    @run_async()
    async def test_invalid_payload_is_rejected_and_nothing_stored(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        catalog = JobCatalog()
        greet = define_job_type(type=_type_name("strict"), payload=Greeting, catalog=catalog)
        async with self._queue(lssm_jobs_backend_factory, catalog) as queue:
            with pytest.raises(JobValidationError) as raised:
                await queue.enqueue(greet, {"name": 42, "times": "x", "extra": True})
            paths = {error.path for error in raised.value.errors}
            assert {"$.name", "$.times"} <= paths
            with pytest.raises(JobValidationError):
                await queue.enqueue_many([(greet, {"name": "ok"}), (greet, {"times": 1})])
            counts = await queue.counts()
            assert sum(sum(per.values()) for per in counts.values()) == 0

    @run_async()
    async def test_plain_function_handlers_run_off_the_event_loop(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        name = _type_name("sync")
        threads: list[int] = []
        loop_thread = threading.get_ident()
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, lambda job: threads.append(threading.get_ident()))
            await queue.enqueue(name, {})
            await queue.start()
            await wait_until(lambda: threads, message="sync handler ran")
            assert threads[0] != loop_thread

    @run_async()
    async def test_concurrency_is_bounded(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("bounded")
        running = 0
        peak = 0
        finished = 0

        async def handler(job: Job[Any]) -> None:
            nonlocal running, peak, finished
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1
            finished += 1

        async with self._queue(lssm_jobs_backend_factory, concurrency=3) as queue:
            queue.register(name, handler)
            await queue.enqueue_many([(name, {}) for _ in range(12)])
            await queue.start()
            await wait_until(lambda: finished == 12, timeout=20, message="12 jobs finished")
        assert peak == 3

    @run_async()
    async def test_queues_are_separate(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("routed")
        seen: list[str] = []
        async with self._queue(lssm_jobs_backend_factory, queues=["fast"]) as queue:
            queue.register(name, lambda job: seen.append(job.queue))
            other = await queue.enqueue(name, {}, queue="slow")
            await queue.enqueue(name, {}, queue="fast")
            await queue.start()
            await wait_until(lambda: seen, message="the 'fast' job ran")
            waiting = await queue.get(other.id)
            assert waiting is not None and waiting.status is JobStatus.PENDING
        assert seen == ["fast"]

    # -- time and order ---------------------------------------------------------------------------------------

    @run_async()
    async def test_delayed_job_waits_for_its_time(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        self._require(lssm_jobs_backend_factory, "delay")
        name = _type_name("delayed")
        started: list[float] = []
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, lambda job: started.append(time.time()))
            job = await queue.enqueue(name, {}, delay_ms=400)
            assert job.status is JobStatus.SCHEDULED
            stored = await queue.get(job.id)
            assert stored is not None and stored.status is JobStatus.SCHEDULED
            await queue.start()
            await wait_until(lambda: started, message="delayed job ran")
        assert started[0] >= job.run_at - 0.01

    @run_async()
    async def test_priority_orders_ready_jobs(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        self._require(lssm_jobs_backend_factory, "priority")
        name = _type_name("prio")
        order: list[int] = []
        async with self._queue(lssm_jobs_backend_factory, concurrency=1) as queue:
            queue.register(name, lambda job: order.append(job.priority))
            for priority in (0, 10, 5, -3, 7):
                await queue.enqueue(name, {}, priority=priority)
            await queue.start()
            await wait_until(lambda: len(order) == 5, message="5 prioritized jobs ran")
        assert order == [10, 7, 5, 0, -3]

    @run_async()
    async def test_dedupe_key_returns_the_live_job(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        self._require(lssm_jobs_backend_factory, "dedupe")
        name = _type_name("dedupe")
        runs: list[str] = []
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, lambda job: runs.append(job.id))
            first = await queue.enqueue(name, {"n": 1}, dedupe_key="report:42", delay_ms=200)
            second = await queue.enqueue(name, {"n": 2}, dedupe_key="report:42")
            assert second.id == first.id
            await queue.start()
            await wait_until(lambda: runs, message="deduplicated job ran")
            await self._status(queue, first.id, JobStatus.COMPLETED)
            third = await queue.enqueue(name, {"n": 3}, dedupe_key="report:42")
            assert third.id != first.id  # the first one completed: the key is free again
            await wait_until(lambda: len(runs) == 2, message="second job with the key ran")
        assert runs == [first.id, third.id]

    # -- failure handling -------------------------------------------------------------------------------------

    @run_async()
    async def test_retries_with_backoff_then_succeeds(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        catalog = JobCatalog()
        flaky: JobType[Any] = define_job_type(
            type=_type_name("flaky"), options=_no_jitter(max_retries=3, backoff_ms=100), catalog=catalog
        )
        attempts: list[tuple[int, float]] = []
        recorder = _Recorder()

        def handler(job: Job[Any]) -> None:
            attempts.append((job.attempt, time.monotonic()))
            if job.attempt < 3:
                raise RuntimeError(f"transient failure {job.attempt}")

        async with self._queue(lssm_jobs_backend_factory, catalog) as queue:
            queue.on("*", recorder.event)
            queue.register(flaky, handler)
            job = await queue.enqueue(flaky, {})
            await queue.start()
            done = await self._status(queue, job.id, JobStatus.COMPLETED)
        assert [attempt for attempt, _ in attempts] == [1, 2, 3]
        assert done.attempt == 3
        gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
        assert all(gap >= 0.09 for gap in gaps), gaps
        retrying = recorder.named("job.retrying", job.id)
        assert [event.attempt for event in retrying] == [1, 2]  # type: ignore[attr-defined]
        assert "transient failure 1" in retrying[0].error  # type: ignore[attr-defined]
        assert recorder.named("job.failed", job.id) == []
        assert len(recorder.named("job.completed", job.id)) == 1

    @run_async()
    async def test_handler_can_ask_for_a_retry_delay(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("retry-after")
        attempts: list[float] = []

        def handler(job: Job[Any]) -> None:
            attempts.append(time.monotonic())
            if job.attempt == 1:
                raise RetryJob("rate limited", delay_ms=300)

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, handler)
            job = await queue.enqueue(name, {}, max_retries=1)
            await queue.start()
            await self._status(queue, job.id, JobStatus.COMPLETED)
        assert attempts[1] - attempts[0] >= 0.28

    @run_async()
    async def test_exhausted_job_fails_once_and_is_dead_lettered(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        catalog = JobCatalog()
        doomed: JobType[Any] = define_job_type(
            type=_type_name("doomed"), options=_no_jitter(max_retries=2), catalog=catalog
        )
        recorder = _Recorder()

        def handler(job: Job[Any]) -> None:
            raise ValueError(f"broken on attempt {job.attempt}")

        async with self._queue(lssm_jobs_backend_factory, catalog) as queue:
            queue.on("*", recorder.event)
            queue.register(doomed, handler)
            job = await queue.enqueue(doomed, {"secret": "s3cr3t"})
            await queue.start()
            dead_job = await self._status(queue, job.id, JobStatus.DEAD)
            assert dead_job.attempt == 3
            dead = await queue.dead_letters.get(job.id)
            assert dead is not None
            assert dead.attempts == 3 and dead.type == doomed.type
            assert "failed after 3 attempts" in dead.reason
            assert dead.error is not None and "broken on attempt 3" in dead.error
            assert dead.traceback is not None and "ValueError" in dead.traceback
            assert [d.id for d in await queue.dead_letters.list()] == [job.id]
        assert len(recorder.named("job.failed", job.id)) == 1
        assert len(recorder.named("job.retrying", job.id)) == 2
        assert len(recorder.named("job.dead_lettered", job.id)) == 1

    @run_async()
    async def test_permanent_error_skips_retries(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("permanent")
        calls: list[int] = []

        def handler(job: Job[Any]) -> None:
            calls.append(job.attempt)
            raise PermanentJobError("the account is gone")

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, handler)
            job = await queue.enqueue(name, {}, max_retries=5)
            await queue.start()
            await self._status(queue, job.id, JobStatus.DEAD)
            dead = await queue.dead_letters.get(job.id)
            assert dead is not None and "permanent" in dead.reason
        assert calls == [1]

    @run_async()
    async def test_timeout_is_enforced(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("slow")
        recorder = _Recorder()

        async def handler(job: Job[Any]) -> None:
            await asyncio.sleep(30)

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.on("*", recorder.event)
            queue.register(name, handler)
            job = await queue.enqueue(name, {}, timeout_ms=100, max_retries=0)
            await queue.start()
            await self._status(queue, job.id, JobStatus.DEAD)
            dead = await queue.dead_letters.get(job.id)
            assert dead is not None and dead.error is not None and "JobTimeoutError" in dead.error
        timed_out = recorder.named("job.timed_out", job.id)
        assert len(timed_out) == 1 and timed_out[0].timeout_ms == 100  # type: ignore[attr-defined]

    @run_async()
    async def test_dead_letter_replay_and_purge(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("replay")
        fixed = False
        done: list[int] = []

        def handler(job: Job[Any]) -> None:
            if not fixed:
                raise RuntimeError("bug")
            done.append(job.attempt)

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, handler)
            first = await queue.enqueue(name, {}, max_retries=0)
            second = await queue.enqueue(name, {}, max_retries=0)
            await queue.start()
            await self._status(queue, first.id, JobStatus.DEAD)
            await self._status(queue, second.id, JobStatus.DEAD)
            fixed = True
            assert await queue.dead_letters.replay(first.id) is True
            assert await queue.dead_letters.replay(uuid.uuid4().hex) is False
            await self._status(queue, first.id, JobStatus.COMPLETED)
            assert done == [1]  # attempts were reset by the replay
            assert [d.id for d in await queue.dead_letters.list()] == [second.id]
            assert await queue.dead_letters.purge() == 1
            assert await queue.dead_letters.list() == []

    # -- jobs that cannot run ---------------------------------------------------------------------------------

    @run_async()
    async def test_unknown_type_is_dead_lettered(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("orphan")
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(_type_name("other"), lambda job: None)
            job = await queue.enqueue(name, {"x": 1})
            await queue.start()
            await self._status(queue, job.id, JobStatus.DEAD)
            dead = await queue.dead_letters.get(job.id)
            assert dead is not None and "no handler registered" in dead.reason and name in dead.reason

    @run_async()
    async def test_invalid_stored_payload_is_dead_lettered(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        name = _type_name("drift")
        strict = JobCatalog()
        define_job_type(type=name, payload=Greeting, catalog=strict)
        handled: list[Any] = []
        # A producer that does not know the type (another service) stores a payload the worker rejects.
        async with self._queue(lssm_jobs_backend_factory) as producer:
            job = await producer.enqueue(name, {"nom": "typo"})
        async with self._queue(lssm_jobs_backend_factory, strict) as worker:
            worker.register(name, handled.append)
            await worker.start()
            await self._status(worker, job.id, JobStatus.DEAD)
            dead = await worker.dead_letters.get(job.id)
            assert dead is not None and dead.reason.startswith("invalid payload")
        assert handled == []

    @run_async()
    async def test_undecodable_envelope_is_dead_lettered_verbatim(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        garbage = b"\xff\x00 not an envelope"
        job_id = uuid.uuid4().hex
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(_type_name("any"), lambda job: None)
            now = time.time()
            await queue.backend.push(
                [
                    OutgoingJob(
                        id=job_id,
                        type="mystery",
                        queue="default",
                        priority=0,
                        run_at=now,
                        created_at=now,
                        dedupe_key=None,
                        body=garbage,
                    )
                ]
            )
            await queue.start()
            dead = await wait_until(lambda: queue.dead_letters.get(job_id), message="garbage dead-lettered")
        assert "undecodable envelope" in dead.reason
        assert dead.body == garbage

    @run_async()
    async def test_old_payload_versions_are_upgraded(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("versioned")
        old = JobCatalog()
        define_job_type(type=name, version=1, catalog=old)
        new = JobCatalog()
        define_job_type(
            type=name,
            version=2,
            payload=Greeting,
            catalog=new,
            upgraders={1: lambda data: {"name": data["full_name"], "times": 1}},
        )
        handled: list[Any] = []
        async with self._queue(lssm_jobs_backend_factory, old) as producer:
            await producer.enqueue(name, {"full_name": "Ada"})
        async with self._queue(lssm_jobs_backend_factory, new) as worker:
            worker.register(name, lambda job: handled.append((job.version, job.payload)))
            await worker.start()
            await wait_until(lambda: handled, message="upgraded job ran")
        assert handled == [(2, Greeting(name="Ada", times=1))]

    # -- workers coming and going -----------------------------------------------------------------------------

    @run_async()
    async def test_lost_lease_is_delivered_again(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        self._require(lssm_jobs_backend_factory, "leases")
        backend = lssm_jobs_backend_factory()
        if not isinstance(backend, PullBackend):
            pytest.skip("only pull backends lease explicitly; others cover redelivery in their own tests")
        name = _type_name("abandoned")
        attempts: list[int] = []
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, lambda job: attempts.append(job.attempt))
            job = await queue.enqueue(name, {})
            # A worker that leases the job and dies without settling it (no heartbeat either).
            await backend.open()
            try:
                leased = await backend.lease(queues=None, limit=1, lease_ms=300, wait=2.0)
                assert [delivery.id for delivery in leased] == [job.id]
                active = await queue.get(job.id)
                assert active is not None and active.status is JobStatus.ACTIVE
                await queue.start()
                await self._status(queue, job.id, JobStatus.COMPLETED)
            finally:
                await backend.close()
        assert attempts == [2]

    @run_async()
    async def test_running_jobs_keep_their_lease(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        self._require(lssm_jobs_backend_factory, "leases")
        name = _type_name("long")
        attempts: list[int] = []

        async def handler(job: Job[Any]) -> None:
            attempts.append(job.attempt)
            await asyncio.sleep(1.0)  # several lease periods: heartbeats must keep it

        async with (
            self._queue(lssm_jobs_backend_factory, lease_ms=300) as first,
            self._queue(lssm_jobs_backend_factory, lease_ms=300) as second,
        ):
            first.register(name, handler)
            second.register(name, handler)
            job = await first.enqueue(name, {})
            await first.start()
            await wait_until(lambda: attempts, message="long job started")
            await second.start()
            await self._status(first, job.id, JobStatus.COMPLETED)
        assert attempts == [1]

    @run_async()
    async def test_graceful_stop_finishes_in_flight_jobs(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        name = _type_name("graceful")
        started = asyncio.Event()
        finished: list[str] = []

        async def handler(job: Job[Any]) -> None:
            started.set()
            await asyncio.sleep(0.3)
            finished.append(job.id)

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, handler)
            job = await queue.enqueue(name, {})
            await queue.start()
            await asyncio.wait_for(started.wait(), 10)
            await queue.stop()
            assert finished == [job.id]
            done = await queue.get(job.id)
            assert done is not None and done.status is JobStatus.COMPLETED

    @run_async()
    async def test_stop_releases_jobs_that_overrun_the_shutdown_timeout(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        name = _type_name("overrun")
        started = asyncio.Event()
        completions: list[int] = []

        async def stubborn(job: Job[Any]) -> None:
            started.set()
            await asyncio.sleep(30)

        async with self._queue(lssm_jobs_backend_factory, shutdown_timeout=0.2) as queue:
            queue.register(name, stubborn)
            job = await queue.enqueue(name, {})
            await queue.start()
            await asyncio.wait_for(started.wait(), 10)
            await queue.stop()
            released = await queue.get(job.id)
            assert released is not None and released.status is JobStatus.PENDING
        async with self._queue(lssm_jobs_backend_factory) as other:
            other.register(name, lambda job: completions.append(job.attempt))
            await other.start()
            await self._status(other, job.id, JobStatus.COMPLETED)
        assert completions == [1]  # a released delivery does not count as an attempt

    # -- events and inspection ------------------------------------------------------------------------------

    @run_async()
    async def test_lifecycle_events(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("observed")
        recorder = _Recorder()
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.on("*", recorder.event)
            queue.on("job.completed", _broken_callback)  # a broken callback must not break the job
            queue.register(name, lambda job: None)
            job = await queue.enqueue(name, {})
            await queue.start()
            await wait_until(lambda: recorder.named("job.completed", job.id), message="job.completed")
        names = [event.name for event in recorder.events if getattr(event, "job_id", None) == job.id]
        assert names == ["job.enqueued", "job.started", "job.completed"]
        completed = recorder.named("job.completed", job.id)[0]
        assert completed.job_type == name and completed.attempt == 1  # type: ignore[attr-defined]
        assert completed.duration_ms >= 0  # type: ignore[attr-defined]

    @run_async()
    async def test_counts_by_queue_and_status(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        name = _type_name("counted")
        async with self._queue(lssm_jobs_backend_factory) as queue:
            await queue.enqueue(name, {}, queue="reports")
            await queue.enqueue(name, {}, queue="reports")
            await queue.enqueue(name, {}, queue="mail", delay_ms=60_000)
            counts = await queue.counts()
        assert counts["reports"].get(JobStatus.PENDING) == 2
        assert counts["mail"].get(JobStatus.SCHEDULED) == 1

    # -- purging a queue (optional: BackendCapabilities.purge_queue) ------------------------------------------

    @run_async()
    async def test_purge_queue_deletes_only_waiting_jobs_of_that_queue(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        self._require(lssm_jobs_backend_factory, "purge_queue", "delay", "dedupe")
        busy, orphan = _type_name("busy"), _type_name("orphan")
        release = asyncio.Event()
        running: list[str] = []

        async def block(job: Job[Any]) -> None:
            running.append(job.id)
            await release.wait()

        async with self._queue(lssm_jobs_backend_factory, queues=["doomed"], concurrency=1) as queue:
            queue.register(busy, block)
            dead = await queue.enqueue(orphan, {}, queue="doomed", priority=10)  # no handler: dead letter
            active = await queue.enqueue(busy, {}, queue="doomed", priority=5)
            await queue.start()
            await self._status(queue, dead.id, JobStatus.DEAD)
            await wait_until(lambda: running == [active.id], message="the blocking job runs")
            waiting = [await queue.enqueue(busy, {"n": n}, queue="doomed") for n in range(3)]
            waiting.append(await queue.enqueue(busy, {}, queue="doomed", delay_ms=60_000))
            waiting.append(await queue.enqueue(busy, {}, queue="doomed", delay_ms=60_000, dedupe_key="one"))
            kept = await queue.enqueue(busy, {}, queue="kept")

            backend = queue.backend
            assert await backend.purge_queue("doomed") == 5
            assert await backend.purge_queue("doomed") == 0
            assert await backend.purge_queue("no-such-queue") == 0
            for job in waiting:
                assert await queue.get(job.id) is None, "a purged job is still there"
            counts = await queue.counts()
            doomed = counts.get("doomed", {})
            assert doomed.get(JobStatus.PENDING, 0) == 0 and doomed.get(JobStatus.SCHEDULED, 0) == 0
            assert doomed.get(JobStatus.ACTIVE) == 1, "the running job must survive a purge"
            assert doomed.get(JobStatus.DEAD) == 1, "dead letters must survive a purge"
            assert counts["kept"].get(JobStatus.PENDING) == 1, "other queues must survive a purge"
            assert (await queue.get(kept.id)) is not None
            again = await queue.enqueue(busy, {}, queue="doomed", delay_ms=60_000, dedupe_key="one")
            assert again.id != waiting[-1].id, "a purged job's dedupe key must be free again"
            release.set()
            await self._status(queue, active.id, JobStatus.COMPLETED)
            assert await backend.purge_queue("doomed") == 1

    @run_async()
    async def test_purged_jobs_never_run(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        self._require(lssm_jobs_backend_factory, "purge_queue")
        name = _type_name("purged")
        ran: list[str] = []
        async with self._queue(lssm_jobs_backend_factory, concurrency=4) as queue:
            queue.register(name, lambda job: ran.append(job.payload["kind"]))
            await queue.enqueue_many([(name, {"kind": "purged"}) for _ in range(50)])
            assert await queue.backend.purge_queue("default") == 50
            await queue.start()
            await queue.enqueue(name, {"kind": "sentinel"})
            # Jobs run oldest first: had any purged job survived, it would have run before the sentinel.
            await wait_until(lambda: "sentinel" in ran, message="the job enqueued after the purge ran")
        assert ran == ["sentinel"]


def conformance_test_names() -> Sequence[str]:
    """Names of every conformance test (used by the docs check)."""
    return sorted(name for name in vars(BackendConformance) if name.startswith("test_"))
