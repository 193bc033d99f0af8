"""The backend conformance suite: one contract, run over every backend (ours and third parties').

Subclass :class:`BackendConformance` in a test module and provide the ``lssm_jobs_backend_factory``
fixture. Tests of features a backend does not declare in its capabilities are skipped, saying which.

Each test's docstring is the rule it checks, word for word as ``docs/writing-a-backend.md`` states it
(``tests/test_docs.py`` compares them). ``tests/test_conformance_mutants.py`` runs the suite over broken
variants of the built-in backends, one defect each, and requires it to fail for every one.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import attrs
import pytest

from lssm_jobs.backends.base import (
    Delivery,
    OutgoingJob,
    PullBackend,
    QueueBackend,
    WorkerInfo,
    WorkerRegistry,
)
from lssm_jobs.cancellation import CancelResult
from lssm_jobs.errors import (
    DedupeConflictError,
    JobFailedError,
    JobValidationError,
    PermanentJobError,
    ResultNotFoundError,
    ResultTimeoutError,
    RetryJob,
)
from lssm_jobs.events import Event
from lssm_jobs.jobs import Job, JobCatalog, JobOptions, JobStatus, JobType, define_job_type
from lssm_jobs.queue import JobQueue
from lssm_jobs.testing.helpers import opened, raw_job, run_async, wait_until

BackendFactory = Callable[[], QueueBackend]

_names = itertools.count()

#: What a test needs beyond the base contract, by test name (filled by :func:`_needs`).
_NEEDS: dict[str, tuple[str, ...]] = {}
#: The marker of tests that lease through :meth:`PullBackend.lease` themselves.
PULL = "pull"
_PULL_ONLY_SKIP = "only pull backends lease explicitly; others cover this in their own tests"


def _type_name(prefix: str) -> str:
    return f"conformance.{prefix}.{next(_names)}.{uuid.uuid4().hex[:6]}"


@attrs.frozen
class Greeting:
    name: str
    times: int = 1


@attrs.frozen
class Receipt:
    """The result type of the results tests."""

    greeted: str
    letters: list[int]


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


def _outgoing(
    *,
    queue: str = "default",
    priority: int = 0,
    run_at: float | None = None,
    dedupe_key: str | None = None,
    body: bytes = b"{}",
    job_id: str | None = None,
) -> OutgoingJob:
    """A job pushed straight into a backend (its body is never decoded by these tests)."""
    return raw_job(
        queue=queue, priority=priority, run_at=run_at, dedupe_key=dedupe_key, body=body, job_id=job_id
    )


def _needs(*needs: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a test as needing backend capabilities (``BackendCapabilities`` field names) or :data:`PULL`;
    the test is skipped, saying which, on backends without them."""

    def mark(test: Callable[..., Any]) -> Callable[..., Any]:
        _NEEDS[test.__name__] = needs
        return test

    return mark


def _conformance_test(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    """An ``async def`` conformance test run in its own event loop, skipped on backends lacking what it
    needs (see :func:`_needs`)."""
    bounded = run_async()(test)

    @functools.wraps(test)
    def run(self: BackendConformance, lssm_jobs_backend_factory: BackendFactory) -> None:
        backend_class = type(lssm_jobs_backend_factory())
        for need in _NEEDS.get(test.__name__, ()):
            if need == PULL:
                if not issubclass(backend_class, PullBackend):
                    pytest.skip(_PULL_ONLY_SKIP)
            elif not getattr(backend_class.capabilities, need):
                pytest.skip(f"backend does not declare the {need!r} capability")
        bounded(self, lssm_jobs_backend_factory)

    return run


@attrs.define
class _LoopActivity:
    iterations: int = 0  # turns of the event loop
    sleeps: int = 0  # turns that waited for something (a timer, a socket, another thread)


@contextmanager
def _loop_activity() -> Iterator[_LoopActivity]:
    """Count the running event loop's turns, and those that went to sleep first; stays at 0 on a loop that
    does not expose its selector."""
    activity = _LoopActivity()
    selector = getattr(asyncio.get_running_loop(), "_selector", None)
    if selector is None:
        yield activity
        return
    original = selector.select

    def select(timeout: float | None = None) -> Any:
        activity.iterations += 1
        if timeout is None or timeout > 0:
            activity.sleeps += 1
        return original(timeout)

    selector.select = select
    try:
        yield activity
    finally:
        del selector.select


class BackendConformance:
    """The contract every queue backend meets. Requires fixture ``lssm_jobs_backend_factory``."""

    #: Overridable knobs for slow services (seconds / milliseconds).
    conformance_timeout: float = 60.0
    lease_ms: int = 1_000
    poll_interval: float = 0.05
    #: Whether the backend under test keeps completed jobs readable (its completed-job retention is above
    #: 0). Set it to False for a backend configured to delete jobs when they complete: the suite then
    #: expects ``get`` to return None for a completed job instead of a ``completed`` record.
    completed_retained: bool = True
    #: Generous bounds of the waiting tests, for loaded machines: how long a woken worker may take to react
    #: (seconds), and the poll interval the wake tests give workers (a worker reacting only when it polls
    #: again misses the bound).
    wake_bound: float = 5.0
    slow_poll_interval: float = 10.0

    # -- harness ----------------------------------------------------------------------------------------------

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
        """Wait until the (stored) job is in one of ``statuses``; it must not vanish meanwhile."""

        async def reached() -> Job[Any] | None:
            job = await queue.get(job_id)
            assert job is not None, f"job {job_id} vanished while awaited in {[s.value for s in statuses]}"
            return job if job.status in statuses else None

        result: Job[Any] = await wait_until(
            reached, timeout=timeout, message=f"job {job_id} in {[s.value for s in statuses]}"
        )
        return result

    async def _completed(self, queue: JobQueue, job_id: str, timeout: float = 10.0) -> None:
        """Wait until the job completed: ``completed``, or gone where completed jobs are not kept."""
        if self.completed_retained:
            await self._status(queue, job_id, JobStatus.COMPLETED, timeout=timeout)
            return

        async def gone() -> bool:
            job = await queue.get(job_id)
            assert job is None or job.status is not JobStatus.COMPLETED, "a completed job was kept"
            return job is None

        await wait_until(gone, timeout=timeout, message=f"completed job {job_id} deleted")

    async def _assert_finished(self, backend: QueueBackend, job_id: str) -> None:
        record = await backend.get(job_id)
        if self.completed_retained:
            assert record is not None and record.status is JobStatus.COMPLETED, record
        else:
            assert record is None, record

    async def _dead_letters(self, factory: BackendFactory, count: int) -> list[str]:
        """Dead-letter ``count`` jobs one after another, at distinct times; their ids, oldest first. Each job
        is enqueued once the one before it is dead, so the order holds on backends without ``fifo``."""
        name = _type_name("doomed")
        done: list[str] = []

        async def doomed(job: Job[Any]) -> None:
            await asyncio.sleep(0.005)  # work, so that failure times differ by more than a clock tick
            raise PermanentJobError("no")

        async with self._queue(factory, concurrency=1) as queue:
            queue.register(name, doomed)
            await queue.start()
            for index in range(count):
                job = await queue.enqueue(name, {"i": index})
                await self._status(queue, job.id, JobStatus.DEAD)
                done.append(job.id)
        return done

    # -- enqueue and consume --------------------------------------------------------------------------------

    @_conformance_test
    async def test_enqueue_then_consume(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """Jobs enqueued by `JobType` and by name are stored `pending` with unique ids, typed payloads
        survive the round trip, and every job runs once, at attempt 1, and ends `completed`."""
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
            assert stored.status is JobStatus.PENDING and stored.attempt == 0
            await queue.start()
            await wait_until(lambda: len(recorder.calls) == len(jobs), message="every job handled")
            for job in jobs:
                await self._completed(queue, job.id)
        assert sorted(call.id for call in recorder.calls) == sorted(job.id for job in jobs)
        assert all(call.attempt == 1 for call in recorder.calls)
        assert {call.payload for call in recorder.calls} >= {Greeting(name="by-name", times=2)}
        assert all(isinstance(call.payload, Greeting) for call in recorder.calls)

    @_conformance_test
    async def test_get_unknown_job_is_none(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """`get` of an unknown id returns `None`."""
        async with self._queue(lssm_jobs_backend_factory) as queue:
            assert await queue.get(uuid.uuid4().hex) is None

    @_conformance_test
    async def test_enqueue_many(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """200 jobs pushed in one `enqueue_many` call get unique ids and all run."""
        name = _type_name("many")
        handled: set[int] = set()
        async with self._queue(lssm_jobs_backend_factory, concurrency=8) as queue:
            queue.register(name, lambda job: handled.add(job.payload["i"]))
            jobs = await queue.enqueue_many([(name, {"i": i}) for i in range(200)])
            assert len(jobs) == 200 and len({job.id for job in jobs}) == 200
            await queue.start()
            await wait_until(lambda: len(handled) == 200, timeout=30, message="200 jobs handled")

    @_conformance_test
    async def test_invalid_payload_is_rejected_and_nothing_stored(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A bad payload raises `JobValidationError` naming `$.name` and `$.times`; an `enqueue_many` with
        one bad payload stores nothing, so counts stay at zero."""
        catalog = JobCatalog()
        greet = define_job_type(type=_type_name("strict"), payload=Greeting, catalog=catalog)
        async with self._queue(lssm_jobs_backend_factory, catalog) as queue:
            with pytest.raises(JobValidationError) as raised:
                await queue.enqueue(greet, {"name": 42, "times": "x", "extra": True})  # type: ignore[misc]
            paths = {error.path for error in raised.value.errors}
            assert {"$.name", "$.times"} <= paths
            with pytest.raises(JobValidationError):
                await queue.enqueue_many([(greet, {"name": "ok"}), (greet, {"times": 1})])
            counts = await queue.counts()
            assert sum(sum(per.values()) for per in counts.values()) == 0

    @_conformance_test
    async def test_plain_function_handlers_run_off_the_event_loop(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A sync handler runs in a thread other than the event loop's."""
        name = _type_name("sync")
        threads: list[int] = []
        loop_thread = threading.get_ident()
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, lambda job: threads.append(threading.get_ident()))
            await queue.enqueue(name, {})
            await queue.start()
            await wait_until(lambda: threads, message="sync handler ran")
            assert threads[0] != loop_thread

    @_conformance_test
    async def test_concurrency_is_bounded(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """With `concurrency=3`, exactly 3 jobs, and never more, run at once."""
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

    @_conformance_test
    async def test_queues_are_separate(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A worker consuming `["fast"]` runs the `fast` job and leaves the `slow` job `pending`."""
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

    # -- producing --------------------------------------------------------------------------------------------

    @_conformance_test
    async def test_push_results_follow_the_order_of_the_jobs(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`push` returns one result per job, in the order of the jobs: the new job's id with
        `created=True`, or the live duplicate's id with `created=False`."""
        async with opened(lssm_jobs_backend_factory()) as backend:
            holders = [_outgoing(dedupe_key="order-1"), _outgoing(dedupe_key="order-2")]
            await backend.push(holders)
            batch = [
                _outgoing(),
                _outgoing(dedupe_key="order-2"),
                _outgoing(),
                _outgoing(dedupe_key="order-1"),
                _outgoing(dedupe_key="order-3"),
                _outgoing(),
            ]
            results = await backend.push(batch)
        expected = [
            (batch[0].id, True),
            (holders[1].id, False),
            (batch[2].id, True),
            (holders[0].id, False),
            (batch[4].id, True),
            (batch[5].id, True),
        ]
        assert [(result.id, result.created) for result in results] == expected

    @_conformance_test
    async def test_pushing_a_stored_job_id_again_stores_nothing(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """Pushing a job whose id is stored already, live or dead, stores nothing and leaves the stored job
        as it was; the result names that id."""
        async with self._queue(lssm_jobs_backend_factory, queues=["doomed"]) as queue:
            backend = queue.backend
            first = _outgoing(body=b"first")
            (result,) = await backend.push([first])
            assert result.id == first.id and result.created
            again = attrs.evolve(first, body=b"second", priority=9)
            (result,) = await backend.push([again])
            assert result.id == first.id
            record = await backend.get(first.id)
            assert record is not None and record.body == b"first" and record.priority == 0
            assert sum((await backend.counts()).get("default", {}).values()) == 1
            # A dead job's id: its body is not an envelope, so the worker dead-letters it.
            doomed = _outgoing(queue="doomed", body=b"not an envelope")
            await backend.push([doomed])
            await queue.start()
            await wait_until(lambda: backend.get_dead(doomed.id), message="job dead-lettered")
            await queue.stop()
            (result,) = await backend.push([attrs.evolve(doomed, body=b"another")])
            assert result.id == doomed.id
            record = await backend.get(doomed.id)
            assert (
                record is not None and record.status is JobStatus.DEAD and record.body == b"not an envelope"
            )
            assert [letter.id for letter in await backend.list_dead()] == [doomed.id]

    # -- time and order ---------------------------------------------------------------------------------------

    @_needs("delay")
    @_conformance_test
    async def test_delayed_job_waits_for_its_time(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A `delay_ms` job is `scheduled` (from `enqueue` and from `get`) and does not start before its
        `run_at`."""
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

    @_needs("delay")
    @_conformance_test
    async def test_overdue_scheduled_job_is_reported_pending(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A scheduled job whose `run_at` has passed is reported `pending` by `get` and `counts`, even
        before any worker looked at it."""
        name = _type_name("overdue")
        async with self._queue(lssm_jobs_backend_factory) as queue:
            job = await queue.enqueue(name, {}, delay_ms=150, queue="later")
            counts = (await queue.counts())["later"]
            if time.time() < job.run_at:  # (a stalled machine may have taken longer than the delay)
                assert counts.get(JobStatus.SCHEDULED) == 1
            await wait_until(lambda: time.time() > job.run_at + 0.05, message="run_at passed")
            stored = await queue.get(job.id)
            assert stored is not None and stored.status is JobStatus.PENDING
            counts = (await queue.counts())["later"]
            assert counts.get(JobStatus.PENDING) == 1 and not counts.get(JobStatus.SCHEDULED)

    @_needs("priority")
    @_conformance_test
    async def test_priority_orders_ready_jobs(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """With `concurrency=1`, ready jobs run by descending priority, also across the queues a worker
        consumes."""
        name = _type_name("prio")
        order: list[int] = []
        async with self._queue(lssm_jobs_backend_factory, concurrency=1, queues=["a", "b"]) as queue:
            queue.register(name, lambda job: order.append(job.priority))
            for priority, queue_name in ((0, "a"), (10, "b"), (5, "a"), (-3, "b"), (7, "a"), (8, "b")):
                await queue.enqueue(name, {}, priority=priority, queue=queue_name)
            await queue.start()
            await wait_until(lambda: len(order) == 6, message="6 prioritized jobs ran")
        assert order == [10, 8, 7, 5, 0, -3]

    @_needs("fifo")
    @_conformance_test
    async def test_ready_jobs_of_one_priority_run_first_in_first_out(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """With `concurrency=1`, jobs of one priority run in the order they became ready: jobs enqueued to
        run now in the order enqueued (one by one or in one `enqueue_many`), then scheduled jobs that came
        due, in the order of their `run_at`."""
        name = _type_name("fifo")
        order: list[str] = []
        async with self._queue(lssm_jobs_backend_factory, concurrency=1) as queue:
            queue.register(name, lambda job: order.append(job.payload["n"]))
            for label in ("a", "b", "c"):
                await queue.enqueue(name, {"n": label})
            await queue.enqueue_many([(name, {"n": label}) for label in ("d", "e", "f")])
            delayed = []
            if type(queue.backend).capabilities.delay:
                for label, delay in (("d300", 300), ("d100", 100), ("d200", 200)):
                    delayed.append(await queue.enqueue(name, {"n": label}, delay_ms=delay))
            if delayed:
                latest = max(job.run_at for job in delayed)
                await wait_until(lambda: time.time() > latest + 0.05, message="every delayed job due")
            await queue.start()
            expected = ["a", "b", "c", "d", "e", "f", *(["d100", "d200", "d300"] if delayed else [])]
            await wait_until(lambda: len(order) == len(expected), message="every job ran")
        assert order == expected

    # -- dedupe -----------------------------------------------------------------------------------------------

    @_needs("dedupe")
    @_conformance_test
    async def test_dedupe_key_returns_the_live_job(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A second enqueue with the `dedupe_key` of a live job returns that job and stores nothing; once
        it completed, the key is free again."""
        name = _type_name("dedupe")
        runs: list[str] = []
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, lambda job: runs.append(job.id))
            first = await queue.enqueue(name, {"n": 1}, dedupe_key="report:42", delay_ms=200)
            second = await queue.enqueue(name, {"n": 2}, dedupe_key="report:42")
            assert second.id == first.id
            await queue.start()
            await wait_until(lambda: runs, message="deduplicated job ran")
            await self._completed(queue, first.id)
            third = await queue.enqueue(name, {"n": 3}, dedupe_key="report:42")
            assert third.id != first.id  # the first one completed: the key is free again
            await wait_until(lambda: len(runs) == 2, message="second job with the key ran")
        assert runs == [first.id, third.id]

    @_needs("dedupe")
    @_conformance_test
    async def test_dedupe_key_is_held_while_running_and_retrying(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A job keeps its `dedupe_key` while it runs and while it waits for a retry: enqueueing the key
        meanwhile returns that job."""
        name = _type_name("dedupe-busy")
        running = asyncio.Event()
        proceed = asyncio.Event()

        async def handler(job: Job[Any]) -> None:
            running.set()
            await proceed.wait()
            raise RetryJob("later", delay_ms=60_000)

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, handler)
            job = await queue.enqueue(name, {}, dedupe_key="busy", max_retries=1)
            await queue.start()
            try:
                await asyncio.wait_for(running.wait(), 10)
                assert (await queue.enqueue(name, {}, dedupe_key="busy")).id == job.id  # active
            finally:
                proceed.set()
            retrying = await self._status(queue, job.id, JobStatus.SCHEDULED)
            assert retrying.attempt == 1
            assert (await queue.enqueue(name, {}, dedupe_key="busy")).id == job.id  # waiting for its retry

    @_needs("dedupe")
    @_conformance_test
    async def test_dedupe_key_is_free_after_dead_lettering(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """Once a job with a `dedupe_key` is dead-lettered, enqueueing the key creates a new job."""
        name = _type_name("dedupe-dead")
        fail = True

        def handler(job: Job[Any]) -> None:
            if fail:
                raise RuntimeError("broken")

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, handler)
            job = await queue.enqueue(name, {}, dedupe_key="dies", max_retries=0)
            await queue.start()
            await self._status(queue, job.id, JobStatus.DEAD)
            fail = False
            fresh = await queue.enqueue(name, {}, dedupe_key="dies")
            assert fresh.id != job.id
            await self._completed(queue, fresh.id)

    @_needs("dedupe")
    @_conformance_test
    async def test_concurrent_pushes_of_one_dedupe_key_create_one_job(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """Producers pushing jobs with one `dedupe_key` at the same time, through several backend
        instances, create exactly one job; every other result names it."""
        keys = [f"race-{n}" for n in range(20)]
        async with AsyncExitStack() as stack:
            backends = [
                await stack.enter_async_context(opened(lssm_jobs_backend_factory())) for _ in range(4)
            ]
            pushes = [backend.push([_outgoing(dedupe_key=key)]) for key in keys for backend in backends]
            results = [result for batch in await asyncio.gather(*pushes) for result in batch]
            counts = await backends[0].counts()
        for index, key in enumerate(keys):
            per_key = results[index * len(backends) : (index + 1) * len(backends)]
            assert sum(result.created for result in per_key) == 1, (key, per_key)
            assert len({result.id for result in per_key}) == 1, (key, per_key)
        assert sum(counts.get("default", {}).values()) == len(keys)

    # -- failure handling -------------------------------------------------------------------------------------

    @_conformance_test
    async def test_retries_with_backoff_then_succeeds(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A job failing twice is retried no sooner than its backoff; it fires `job.retrying` for attempts
        1 and 2, then `job.completed` once, and no `job.failed`."""
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
            await wait_until(lambda: recorder.named("job.completed", job.id), message="job.completed")
            await self._completed(queue, job.id)
        assert [attempt for attempt, _ in attempts] == [1, 2, 3]
        gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
        assert all(gap >= 0.09 for gap in gaps), gaps
        retrying = recorder.named("job.retrying", job.id)
        assert [event.attempt for event in retrying] == [1, 2]  # type: ignore[attr-defined]
        assert "transient failure 1" in retrying[0].error  # type: ignore[attr-defined]
        assert recorder.named("job.failed", job.id) == []
        assert len(recorder.named("job.completed", job.id)) == 1

    @_conformance_test
    async def test_retry_waits_scheduled_with_its_error(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A job waiting for its retry is `scheduled` (and counted so), keeps its attempt count, and `get`
        shows the failure as `last_error`."""
        name = _type_name("waiting-retry")
        async with self._queue(lssm_jobs_backend_factory, queues=["retries"]) as queue:

            def handler(job: Job[Any]) -> None:
                raise RetryJob("upstream said 503", delay_ms=60_000)

            queue.register(name, handler)
            job = await queue.enqueue(name, {}, queue="retries", max_retries=2)
            await queue.start()
            waiting = await self._status(queue, job.id, JobStatus.SCHEDULED)
            assert waiting.attempt == 1
            assert waiting.last_error is not None and "upstream said 503" in waiting.last_error
            assert waiting.run_at >= time.time() + 50
            assert (await queue.counts())["retries"].get(JobStatus.SCHEDULED) == 1

    @_conformance_test
    async def test_handler_can_ask_for_a_retry_delay(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """`RetryJob(delay_ms=300)` delays the next attempt by at least 300 ms."""
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
            await wait_until(lambda: len(attempts) == 2, message="second attempt")
            await self._completed(queue, job.id)
        assert attempts[1] - attempts[0] >= 0.28

    @_conformance_test
    async def test_exhausted_job_fails_once_and_is_dead_lettered(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """After its retries, a job is `dead`, with the reason `failed after 3 attempts`, the error, the
        traceback and the attempt count; it fires `job.failed` once, `job.retrying` twice and
        `job.dead_lettered` once."""
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
            job = await queue.enqueue(doomed, {})
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

    @_conformance_test
    async def test_permanent_error_skips_retries(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """`PermanentJobError` dead-letters at once, despite retries left, with a `permanent ...` reason."""
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

    @_conformance_test
    async def test_timeout_is_enforced(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """An async handler past `timeout_ms` is stopped and dead-lettered with a `JobTimeoutError`; one
        `job.timed_out` fires with the right `timeout_ms`."""
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

    # -- dead letters -----------------------------------------------------------------------------------------

    @_conformance_test
    async def test_dead_lettered_job_is_reported_by_get(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`get` of a dead-lettered job returns it as `dead`, with its queue, priority, dedupe key and
        attempts, and the dead letter's error as `last_error`; `get_dead` of a job that is not dead returns
        `None`."""
        name = _type_name("obituary")

        def handler(job: Job[Any]) -> None:
            raise PermanentJobError("card declined")

        # A priority or dedupe key the backend does not declare would be refused: the defaults stand in.
        capabilities = type(lssm_jobs_backend_factory()).capabilities
        priority = 3 if capabilities.priority else 0
        dedupe_key = "bill-7" if capabilities.dedupe else None
        async with self._queue(lssm_jobs_backend_factory, queues=["billing"]) as queue:
            queue.register(name, handler)
            job = await queue.enqueue(
                name, {}, queue="billing", priority=priority or None, dedupe_key=dedupe_key
            )
            waiting = await queue.enqueue(name, {}, queue="elsewhere")
            await queue.start()
            dead = await self._status(queue, job.id, JobStatus.DEAD)
            record = await queue.backend.get(job.id)
            assert await queue.backend.get_dead(waiting.id) is None
        assert record is not None and record.status is JobStatus.DEAD
        assert (record.queue, record.priority, record.dedupe_key, record.attempts) == (
            "billing",
            priority,
            dedupe_key,
            1,
        )
        assert record.last_error is not None and "card declined" in record.last_error
        assert dead.attempt == 1 and dead.last_error == record.last_error

    @_conformance_test
    async def test_dead_letters_are_listed_most_recent_first(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`list_dead` returns dead letters most recent first, `limit` of them after skipping `offset`."""
        first, second, third = await self._dead_letters(lssm_jobs_backend_factory, 3)
        async with opened(lssm_jobs_backend_factory()) as backend:

            async def listed(**page: int) -> list[str]:
                return [letter.id for letter in await backend.list_dead(**page)]

            assert await listed() == [third, second, first]
            assert await listed(limit=2) == [third, second]
            assert await listed(offset=1) == [second, first]
            assert await listed(offset=1, limit=1) == [second]
            assert await listed(offset=3) == []

    @_conformance_test
    async def test_purge_deletes_only_the_given_dead_letters(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`purge_dead(ids)` deletes those dead letters, ignores ids that are not dead letters (a live job
        stays untouched), and returns how many it deleted; `purge_dead()` deletes the rest."""
        first, second, third = await self._dead_letters(lssm_jobs_backend_factory, 3)
        async with opened(lssm_jobs_backend_factory()) as backend:
            live = _outgoing()
            await backend.push([live])
            assert await backend.purge_dead([second, uuid.uuid4().hex, live.id]) == 1
            assert [letter.id for letter in await backend.list_dead()] == [third, first]
            record = await backend.get(live.id)
            assert record is not None and record.status is JobStatus.PENDING
            assert await backend.purge_dead() == 2
            assert await backend.list_dead() == []
            assert (await backend.get(live.id)) is not None

    @_conformance_test
    async def test_dead_letter_replay_and_purge(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """`replay` resets attempts and the job completes at attempt 1; replaying an unknown id, or the id
        of a job that is not dead, returns `False`; `list` shows the remaining dead letter and `purge()`
        deletes it."""
        name = _type_name("replay")
        fixed = False
        done: list[int] = []

        def handler(job: Job[Any]) -> None:
            if not fixed:
                raise RuntimeError("bug")
            done.append(job.attempt)

        async with self._queue(lssm_jobs_backend_factory, queues=["default"]) as queue:
            queue.register(name, handler)
            first = await queue.enqueue(name, {}, max_retries=0)
            second = await queue.enqueue(name, {}, max_retries=0)
            bystander = await queue.enqueue(name, {}, queue="unconsumed")
            await queue.start()
            await self._status(queue, first.id, JobStatus.DEAD)
            await self._status(queue, second.id, JobStatus.DEAD)
            fixed = True
            assert await queue.dead_letters.replay(first.id) is True
            assert await queue.dead_letters.replay(uuid.uuid4().hex) is False
            assert await queue.backend.replay_dead(bystander.id, run_at=time.time()) is False
            await self._completed(queue, first.id)
            assert done == [1]  # attempts were reset by the replay
            assert [d.id for d in await queue.dead_letters.list()] == [second.id]
            assert await queue.dead_letters.purge() == 1
            assert await queue.dead_letters.list() == []
            untouched = await queue.get(bystander.id)
            assert untouched is not None and untouched.status is JobStatus.PENDING and untouched.attempt == 0

    @_needs("delay")
    @_conformance_test
    async def test_replay_honours_run_at_and_keeps_the_dedupe_key(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A replayed job waits for the `run_at` given to `replay_dead` (`scheduled` until then) and holds
        its `dedupe_key` again."""
        name = _type_name("replay-later")
        fixed = False
        started: list[float] = []

        def handler(job: Job[Any]) -> None:
            if not fixed:
                raise RuntimeError("bug")
            started.append(time.time())

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, handler)
            job = await queue.enqueue(name, {}, max_retries=0, dedupe_key="nightly")
            await queue.start()
            await self._status(queue, job.id, JobStatus.DEAD)
            fixed = True
            replayed_at = time.time()
            assert await queue.dead_letters.replay(job.id, delay_ms=400) is True
            waiting = await queue.get(job.id)
            assert waiting is not None and waiting.attempt == 0 and waiting.dedupe_key == "nightly"
            if time.time() < replayed_at + 0.4:  # (a stalled machine may have taken longer than the delay)
                assert waiting.status is JobStatus.SCHEDULED
            if type(queue.backend).capabilities.dedupe:
                assert (await queue.enqueue(name, {}, dedupe_key="nightly")).id == job.id
            await self._completed(queue, job.id)
        assert len(started) == 1 and started[0] >= replayed_at + 0.39

    @_needs("dedupe")
    @_conformance_test
    async def test_replay_refuses_while_a_live_job_holds_the_dedupe_key(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`replay_dead` of a dead letter whose `dedupe_key` another live job holds raises
        `DedupeConflictError` naming the live job, and the dead letter stays; once that job finished, the
        replay succeeds."""
        name = _type_name("replay-conflict")
        fail = True
        release = asyncio.Event()

        async def handler(job: Job[Any]) -> None:
            if fail:
                raise RuntimeError("bug")
            await release.wait()

        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(name, handler)
            dead = await queue.enqueue(name, {}, max_retries=0, dedupe_key="invoice-9")
            await queue.start()
            await self._status(queue, dead.id, JobStatus.DEAD)
            fail = False
            holder = await queue.enqueue(name, {}, dedupe_key="invoice-9")
            assert holder.id != dead.id
            try:
                await self._status(queue, holder.id, JobStatus.ACTIVE)
                with pytest.raises(DedupeConflictError) as raised:
                    await queue.backend.replay_dead(dead.id, run_at=time.time())
                assert raised.value.job_id == dead.id and raised.value.live_job_id == holder.id
                assert raised.value.dedupe_key == "invoice-9"
                assert await queue.backend.get_dead(dead.id) is not None
                still = await queue.get(dead.id)
                assert still is not None and still.status is JobStatus.DEAD
            finally:
                release.set()
            await self._completed(queue, holder.id)
            assert await queue.dead_letters.replay(dead.id) is True
            await self._completed(queue, dead.id)

    # -- jobs that cannot run ---------------------------------------------------------------------------------

    @_conformance_test
    async def test_unknown_type_is_dead_lettered(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A job with no registered handler is dead-lettered with `no handler registered` and the type's
        name."""
        name = _type_name("orphan")
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(_type_name("other"), lambda job: None)
            job = await queue.enqueue(name, {"x": 1})
            await queue.start()
            await self._status(queue, job.id, JobStatus.DEAD)
            dead = await queue.dead_letters.get(job.id)
            assert dead is not None and "no handler registered" in dead.reason and name in dead.reason

    @_conformance_test
    async def test_invalid_stored_payload_is_dead_lettered(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A payload stored by a producer that did not know the type is dead-lettered with `invalid
        payload...` by a worker that does, and the handler never runs."""
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

    @_conformance_test
    async def test_undecodable_envelope_is_dead_lettered_verbatim(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """Garbage bytes pushed straight into the backend are dead-lettered as `undecodable envelope`, with
        the body kept byte for byte."""
        garbage = b"\xff\x00 not an envelope"
        job_id = uuid.uuid4().hex
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(_type_name("any"), lambda job: None)
            await queue.backend.push([_outgoing(job_id=job_id, body=garbage)])
            await queue.start()
            dead = await wait_until(lambda: queue.dead_letters.get(job_id), message="garbage dead-lettered")
        assert "undecodable envelope" in dead.reason
        assert dead.body == garbage

    @_conformance_test
    async def test_old_payload_versions_are_upgraded(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A version 1 job runs on a version 2 worker through its upgrader, as `(2, Greeting(...))`."""
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

    # -- leases -----------------------------------------------------------------------------------------------

    @_needs(PULL)
    @_conformance_test
    async def test_lease_takes_ready_jobs_up_to_its_limit(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`lease` returns at most `limit` ready jobs, best first, each `active` with its attempt counted;
        with nothing ready and `wait=0` it returns an empty list at once."""
        async with opened(lssm_jobs_backend_factory()) as backend:
            assert isinstance(backend, PullBackend)
            jobs = [_outgoing(priority=priority, body=b"%d" % priority) for priority in (1, 4, 2, 5, 3)]
            await backend.push(jobs)
            first = await backend.lease(queues=None, limit=2, lease_ms=30_000, wait=1.0)
            assert [delivery.body for delivery in first] == [b"5", b"4"]
            assert all(delivery.attempt == 1 and delivery.queue == "default" for delivery in first)
            record = await backend.get(first[0].id)
            assert record is not None and record.status is JobStatus.ACTIVE and record.attempts == 1
            rest = await backend.lease(queues=None, limit=10, lease_ms=30_000, wait=1.0)
            assert [delivery.body for delivery in rest] == [b"3", b"2", b"1"]
            assert (await backend.counts())["default"].get(JobStatus.ACTIVE) == 5
            assert await backend.lease(queues=None, limit=10, lease_ms=30_000, wait=0) == []

    @_needs(PULL)
    @_conformance_test
    async def test_concurrent_leases_never_hand_out_one_job_twice(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """Workers leasing at the same time through several backend instances never get one job twice:
        each of 200 ready jobs is leased exactly once."""
        async with AsyncExitStack() as stack:
            backends = [
                await stack.enter_async_context(opened(lssm_jobs_backend_factory())) for _ in range(4)
            ]
            jobs = [_outgoing() for _ in range(200)]
            await backends[0].push(jobs)
            leased: list[str] = []

            async def drain(backend: QueueBackend) -> None:
                assert isinstance(backend, PullBackend)
                while deliveries := await backend.lease(queues=None, limit=5, lease_ms=30_000, wait=0):
                    leased.extend(delivery.id for delivery in deliveries)

            await asyncio.gather(*(drain(backend) for backend in backends))
        assert len(leased) == len(set(leased)), "a job was leased twice at once"
        assert sorted(leased) == sorted(job.id for job in jobs)

    @_needs(PULL, "leases")
    @_conformance_test
    async def test_settling_a_lost_lease_changes_nothing(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """Once a job was leased again, by any instance, or its delivery settled, that delivery's `ack`,
        `retry`, `dead_letter` and `release` change nothing and its `extend` returns `False`: every lease
        has a token of its own."""
        async with opened(lssm_jobs_backend_factory()) as mine, opened(lssm_jobs_backend_factory()) as other:
            assert isinstance(mine, PullBackend) and isinstance(other, PullBackend)
            jobs = [_outgoing() for _ in range(8)]
            await mine.push(jobs)
            old = await mine.lease(queues=None, limit=8, lease_ms=200, wait=1.0)
            assert len(old) == 8
            # Every lease expires; four jobs are leased again by the same instance, four by another.
            new = [*await self._lease_n(mine, 4), *await self._lease_n(other, 4)]
            new_by_id = {delivery.id: delivery for delivery in new}
            assert len(new_by_id) == 8 and all(delivery.attempt == 2 for delivery in new)
            for delivery in old:  # each kind of settle, on jobs leased again by each instance
                settle = _STALE_SETTLES[new.index(new_by_id[delivery.id]) % len(_STALE_SETTLES)]
                await settle(delivery)
            assert [await delivery.extend(30_000) for delivery in old] == [False] * 8
            for job in jobs:
                record = await mine.get(job.id)
                assert record is not None and record.status is JobStatus.ACTIVE and record.attempts == 2, (
                    record
                )
            assert await mine.list_dead() == []
            # A delivery that was released cannot settle the next lease of its job either.
            released = new[0]
            await released.release()
            (again,) = await self._lease_n(other, 1)
            assert again.id == released.id
            for settle in _STALE_SETTLES:
                await settle(released)
            record = await mine.get(released.id)
            assert record is not None and record.status is JobStatus.ACTIVE, record
            assert await again.extend(30_000) is True
            await again.ack()
            await self._assert_finished(mine, again.id)

    async def _lease_n(self, backend: PullBackend, count: int) -> list[Delivery]:
        """Lease exactly ``count`` jobs (waiting for expired leases to be reclaimed)."""
        leased: list[Delivery] = []

        async def more() -> bool:
            leased.extend(
                await backend.lease(queues=None, limit=count - len(leased), lease_ms=30_000, wait=0)
            )
            return len(leased) >= count

        await wait_until(more, message=f"{count} jobs leased")
        return leased

    @_needs(PULL, "leases")
    @_conformance_test
    async def test_extend_keeps_the_lease_until_the_job_is_settled(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`extend` moves the lease expiry, so nobody else leases the job past its first expiry; after a
        settle, also one racing it, `extend` returns `False` and changes nothing."""
        async with opened(lssm_jobs_backend_factory()) as mine, opened(lssm_jobs_backend_factory()) as other:
            assert isinstance(mine, PullBackend) and isinstance(other, PullBackend)
            job = _outgoing()
            await mine.push([job])
            leased_at = time.time()
            (delivery,) = await mine.lease(queues=None, limit=1, lease_ms=500, wait=1.0)
            assert await delivery.extend(5_000) is True
            while time.time() < leased_at + 1.0:  # twice the first lease: it would have expired
                assert await other.lease(queues=None, limit=1, lease_ms=30_000, wait=0) == []
                await asyncio.sleep(0.05)
            await asyncio.gather(delivery.ack(), delivery.extend(5_000))
            assert await delivery.extend(5_000) is False
            await self._assert_finished(mine, job.id)
            assert await other.lease(queues=None, limit=1, lease_ms=30_000, wait=0) == []

    @_needs(PULL)
    @_conformance_test
    async def test_batch_extend_and_ack_settle_each_delivery(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`extend_many` extends each delivery's lease and answers per delivery, in order (`False` for a
        lost lease); `ack_many` acks each delivery, and a lost lease among them changes nothing."""
        async with (
            opened(lssm_jobs_backend_factory()) as backend,
            opened(lssm_jobs_backend_factory()) as other,
        ):
            assert isinstance(backend, PullBackend) and isinstance(other, PullBackend)
            await backend.push([_outgoing() for _ in range(5)])
            deliveries = await backend.lease(queues=None, limit=5, lease_ms=30_000, wait=1.0)
            assert len(deliveries) == 5
            settled, lost, *running = deliveries
            await settled.ack()
            await lost.release()
            (thief,) = await other.lease(queues=None, limit=1, lease_ms=30_000, wait=1.0)
            assert thief.id == lost.id
            assert await backend.extend_many(deliveries, 30_000) == [False, False, True, True, True]
            await backend.ack_many([lost, *running])
            for delivery in running:
                await self._assert_finished(backend, delivery.id)
            record = await backend.get(lost.id)
            assert record is not None and record.status is JobStatus.ACTIVE and record.attempts == 1
            assert await backend.extend_many(running, 30_000) == [False] * 3
            assert await other.extend_many([thief], 30_000) == [True]

    # -- workers coming and going -----------------------------------------------------------------------------

    @_needs(PULL, "leases")
    @_conformance_test
    async def test_lost_lease_is_delivered_again(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A job leased by a "worker" that dies without settling stays `active` (attempt 1) in `get` and
        `counts` after its lease expired, until it is delivered again, as attempt 2."""
        name = _type_name("abandoned")
        attempts: list[int] = []
        async with (
            self._queue(lssm_jobs_backend_factory) as queue,
            opened(lssm_jobs_backend_factory()) as dying,
        ):
            assert isinstance(dying, PullBackend)
            queue.register(name, lambda job: attempts.append(job.attempt))
            job = await queue.enqueue(name, {})
            # A worker that leases the job and dies without settling it (no heartbeat either).
            leased = await dying.lease(queues=None, limit=1, lease_ms=300, wait=2.0)
            leased_at = time.time()
            assert [delivery.id for delivery in leased] == [job.id]
            await wait_until(lambda: time.time() > leased_at + 0.35, message="lease expired")
            expired = await queue.get(job.id)
            assert expired is not None and expired.status is JobStatus.ACTIVE and expired.attempt == 1
            assert (await queue.counts())["default"].get(JobStatus.ACTIVE) == 1
            await queue.start()
            await self._completed(queue, job.id)
        assert attempts == [2]

    @_needs("leases")
    @_conformance_test
    async def test_running_jobs_keep_their_lease(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A job running for several lease periods keeps its lease through heartbeats; a second worker does
        not run it too."""
        name = _type_name("long")
        attempts: list[int] = []

        async def handler(job: Job[Any]) -> None:
            attempts.append(job.attempt)
            await asyncio.sleep(2.0)  # several lease periods: heartbeats must keep it

        # 600 ms: a lease three heartbeats long (one every lease / 3) outlives an event loop held up for a
        # few hundred milliseconds on a loaded machine, and the job still runs past three lease periods.
        async with (
            self._queue(lssm_jobs_backend_factory, lease_ms=600) as first,
            self._queue(lssm_jobs_backend_factory, lease_ms=600) as second,
        ):
            first.register(name, handler)
            second.register(name, handler)
            job = await first.enqueue(name, {})
            await first.start()
            await wait_until(lambda: attempts, message="long job started")
            await second.start()
            await self._completed(first, job.id)
        assert attempts == [1]

    @_conformance_test
    async def test_graceful_stop_finishes_in_flight_jobs(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`stop()` waits for a running job, which ends `completed`."""
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
            await self._assert_finished(queue.backend, job.id)

    @_conformance_test
    async def test_stop_releases_jobs_that_overrun_the_shutdown_timeout(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A job still running after `shutdown_timeout` is released as `pending`; another worker then
        completes it at attempt 1, because the release did not count."""
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
            await self._completed(other, job.id)
        assert completions == [1]  # a released delivery does not count as an attempt

    # -- waiting ----------------------------------------------------------------------------------------------

    @_conformance_test
    async def test_idle_worker_waits_instead_of_polling(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """An idle worker calls `lease` at most twice per `poll_interval`, and its event loop goes to sleep
        at most 50 times a second and turns at most 500 times a second: `lease` waits for work instead of
        polling."""
        poll_interval, window = 0.25, 1.0
        calls = 0
        async with self._queue(
            lssm_jobs_backend_factory, poll_interval=poll_interval, lease_ms=60_000
        ) as queue:
            backend = queue.backend
            if isinstance(backend, PullBackend):
                lease = backend.lease

                async def counted(**arguments: Any) -> list[Delivery]:
                    nonlocal calls
                    calls += 1
                    return await lease(**arguments)

                backend.lease = counted  # type: ignore[method-assign]
            await queue.start()
            await asyncio.sleep(0.3)  # settle in: the first leases, the heartbeat's first sleep
            calls = 0
            with _loop_activity() as loop:
                await asyncio.sleep(window)  # the measurement: nothing happens for a second
            idle_calls = calls
        assert idle_calls <= 2 * window / poll_interval, f"{idle_calls} lease calls in {window}s of idling"
        assert loop.sleeps <= 50 * window, f"the event loop slept {loop.sleeps} times in {window}s of idling"
        assert loop.iterations <= 500 * window, f"the event loop turned {loop.iterations} times in {window}s"

    @_conformance_test
    async def test_waiting_worker_wakes_for_a_push_a_due_job_and_a_stop(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A worker waiting with a `poll_interval` of `slow_poll_interval` (10 s) starts a job pushed in the
        same process (by its own or another backend instance), a scheduled job as it comes due and, on pull
        backends, a job whose lease expired, each within `wake_bound` (5 s), and `stop()` returns as
        promptly: `lease` wakes for pushes, due times and `wake()`, not only when it polls."""
        name = _type_name("wake")
        started: dict[str, float] = {}
        bound, slow = self.wake_bound, self.slow_poll_interval

        def handler(job: Job[Any]) -> None:
            started.setdefault(job.payload["n"], time.time())

        async with (
            self._queue(lssm_jobs_backend_factory, poll_interval=slow, queues=["default"]) as worker,
            self._queue(lssm_jobs_backend_factory) as producer,
        ):
            worker.register(name, handler)
            capabilities = type(worker.backend).capabilities
            await worker.start()
            await asyncio.sleep(0.3)  # let the worker settle into its long wait
            for label, source in (("pushed", producer), ("own", worker)):
                pushed = time.time()
                await source.enqueue(name, {"n": label})
                await wait_until(
                    lambda label=label: label in started,  # type: ignore[misc]
                    timeout=bound,
                    message=f"{label} job started",
                )
                assert started[label] - pushed < bound
            if capabilities.delay:
                delayed = await producer.enqueue(name, {"n": "delayed"}, delay_ms=300)
                await wait_until(
                    lambda: "delayed" in started, timeout=bound + 0.3, message="delayed job started"
                )
                assert delayed.run_at - 0.01 <= started["delayed"] < delayed.run_at + bound
            if isinstance(worker.backend, PullBackend) and capabilities.leases:
                async with opened(lssm_jobs_backend_factory()) as dying:
                    assert isinstance(dying, PullBackend)
                    abandoned = await producer.enqueue(name, {"n": "abandoned"}, queue="orphans")
                    (lost,) = await dying.lease(queues=["orphans"], limit=1, lease_ms=300, wait=1.0)
                    expires = time.time() + 0.3
                    assert lost.id == abandoned.id
                    async with self._queue(
                        lssm_jobs_backend_factory, poll_interval=slow, queues=["orphans"]
                    ) as rescuer:
                        rescuer.register(name, handler)
                        await rescuer.start()
                        await wait_until(
                            lambda: "abandoned" in started,
                            timeout=bound + 0.3,
                            message="abandoned job started",
                        )
                assert started["abandoned"] < expires + bound
            stop_began = time.monotonic()
            await worker.stop()
            stopped_in = time.monotonic() - stop_began
        assert stopped_in < bound, f"stop() took {stopped_in:.1f}s"

    # -- events and inspection ------------------------------------------------------------------------------

    @_conformance_test
    async def test_lifecycle_events(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """One job fires exactly `job.enqueued`, `job.started` and `job.completed`, with the right type,
        attempt and duration, even though another callback raises."""
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

    @_conformance_test
    async def test_counts_by_queue_and_status(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """`counts()` reports the jobs of each queue by status: `scheduled`, `pending`, `active`,
        `completed` (while kept) and `dead`."""
        name = _type_name("counted")
        release = asyncio.Event()

        async def handler(job: Job[Any]) -> None:
            if job.queue == "dead":
                raise PermanentJobError("no")
            if job.queue == "active":
                await release.wait()

        async with self._queue(lssm_jobs_backend_factory, queues=["active", "completed", "dead"]) as queue:
            queue.register(name, handler)
            delay = type(queue.backend).capabilities.delay
            await queue.enqueue(name, {}, queue="pending")
            await queue.enqueue(name, {}, queue="pending")
            if delay:
                await queue.enqueue(name, {}, queue="scheduled", delay_ms=60_000)
            active = await queue.enqueue(name, {}, queue="active")
            completed = await queue.enqueue(name, {}, queue="completed")
            dead = await queue.enqueue(name, {}, queue="dead")
            await queue.start()
            try:
                await self._status(queue, active.id, JobStatus.ACTIVE)
                await self._completed(queue, completed.id)
                await self._status(queue, dead.id, JobStatus.DEAD)
                counts = await queue.counts()
            finally:
                release.set()

        def count(queue_name: str, status: JobStatus) -> int:
            return counts.get(queue_name, {}).get(status, 0)

        assert count("pending", JobStatus.PENDING) == 2
        assert count("scheduled", JobStatus.SCHEDULED) == (1 if delay else 0)
        assert count("active", JobStatus.ACTIVE) == 1
        assert count("dead", JobStatus.DEAD) == 1
        assert count("completed", JobStatus.COMPLETED) == (1 if self.completed_retained else 0)

    # -- purging a queue (optional: BackendCapabilities.purge_queue) ------------------------------------------

    @_needs("purge_queue", "delay", "dedupe")
    @_conformance_test
    async def test_purge_queue_deletes_only_waiting_jobs_of_that_queue(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`purge_queue(queue)` deletes that queue's `pending` and `scheduled` jobs and returns how many: the
        purged jobs are gone from `get` and their dedupe keys are free; running jobs (which still complete),
        dead letters and other queues stay; purging again, or an unknown queue, returns 0."""
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
            await self._completed(queue, active.id)
            assert await backend.purge_queue("doomed") == 1

    @_needs("purge_queue")
    @_conformance_test
    async def test_purged_jobs_never_run(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A purged job never runs: a worker started after the purge runs only the jobs enqueued after it."""
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

    # -- results (optional: BackendCapabilities.results) --------------------------------------------------------

    @_needs("results")
    @_conformance_test
    async def test_results_round_trip_typed(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A handler's return value comes back from `job.wait()` as the job type's result type, whether the
        handler returned an instance or plain data, and from `result(job_id)` on another queue over another
        backend instance; a job type without a result type waits to `None` (where completed jobs are kept;
        else to `ResultNotFoundError` once its record is gone)."""
        catalog = JobCatalog()
        greet = define_job_type(type=_type_name("result"), payload=Greeting, result=Receipt, catalog=catalog)
        plain = define_job_type(type=_type_name("plain-result"), result=Receipt, catalog=catalog)
        silent = define_job_type(type=_type_name("no-result"), catalog=catalog)
        async with (
            self._queue(lssm_jobs_backend_factory, catalog) as worker,
            self._queue(lssm_jobs_backend_factory, catalog) as producer,
        ):
            assert worker.result_store is not None, "declares results, but no result store is registered for it"
            worker.register(
                greet,
                lambda job: Receipt(greeted=job.payload.name, letters=[len(job.payload.name)] * job.payload.times),
            )
            worker.register(plain, lambda job: {"greeted": "plain", "letters": [1, 2]})
            worker.register(silent, lambda job: "dropped")
            await worker.start()
            job = await producer.enqueue(greet, Greeting(name="Ada", times=2))
            assert await job.wait(timeout=10) == Receipt(greeted="Ada", letters=[3, 3])
            assert await producer.result(job.id, timeout=10) == Receipt(greeted="Ada", letters=[3, 3])
            from_data = await producer.result((await producer.enqueue(plain, {})).id, timeout=10)
            assert from_data == Receipt(greeted="plain", letters=[1, 2])
            quiet = await producer.enqueue(silent, {})
            if self.completed_retained:
                assert await quiet.wait(timeout=10) is None
            else:
                await self._completed(producer, quiet.id)
                with pytest.raises(ResultNotFoundError):
                    await quiet.wait(timeout=10)

    @_needs("results")
    @_conformance_test
    async def test_results_surface_failures_and_timeouts(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """Waiting for a job that was dead-lettered raises `JobFailedError` with its last error (a handler's
        error, or the invalid return value); a job that does not finish in time raises `ResultTimeoutError`
        after about the timeout; an unknown job id raises `ResultNotFoundError`."""
        catalog = JobCatalog()
        failing = define_job_type(type=_type_name("result-fails"), result=int, catalog=catalog)
        wrong = define_job_type(type=_type_name("result-wrong"), result=Receipt, catalog=catalog)
        idle = define_job_type(type=_type_name("result-idle"), result=int, catalog=catalog)

        async def fail(job: Job[Any]) -> int:
            raise PermanentJobError("the printer is on fire")

        async with self._queue(lssm_jobs_backend_factory, catalog, queues=["default"]) as queue:
            queue.register(failing, fail)
            queue.register(wrong, lambda job: {"greeted": 5})
            await queue.start()
            with pytest.raises(JobFailedError, match="the printer is on fire") as failed:
                await queue.result(await queue.enqueue(failing, {}), timeout=10)
            assert failed.value.error is not None and "PermanentJobError" in failed.value.error
            with pytest.raises(JobFailedError, match="InvalidResultError") as invalid:
                await queue.result(await queue.enqueue(wrong, {}), timeout=10)
            assert "$.greeted" in str(invalid.value)
            pending = await queue.enqueue(idle, {}, queue="parked")  # a queue no worker consumes
            started = time.monotonic()
            with pytest.raises(ResultTimeoutError):
                await queue.result(pending.id, timeout=0.3)
            assert 0.25 <= time.monotonic() - started < 5
            with pytest.raises(ResultNotFoundError):
                await queue.result(uuid.uuid4().hex, timeout=1)

    @_needs("results")
    @_conformance_test
    async def test_results_expire_after_their_retention(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A result is readable until its `result_ttl_ms` ends, then `result()` raises
        `ResultNotFoundError`."""
        catalog = JobCatalog()
        brief = define_job_type(
            type=_type_name("result-brief"), result=str, result_ttl_ms=300, catalog=catalog
        )
        async with self._queue(lssm_jobs_backend_factory, catalog) as queue:
            queue.register(brief, lambda job: "soon gone")
            await queue.start()
            job = await queue.enqueue(brief, {})
            assert await job.wait(timeout=10) == "soon gone"

            async def expired() -> bool:
                try:
                    await queue.result(job.id, timeout=0)
                except ResultNotFoundError:
                    return True
                return False

            await wait_until(expired, timeout=10, message="the result expired")

    # -- live workers (optional: BackendCapabilities.worker_registry) ------------------------------------------

    @staticmethod
    def _worker(name: str, **fields: Any) -> WorkerInfo:
        now = time.time()
        values: dict[str, Any] = {
            "id": f"{name}-{uuid.uuid4().hex[:8]}",
            "host": "conformance-host",
            "pid": 4242,
            "queues": ("mail", "reports"),
            "concurrency": 8,
            "started_at": now,
            "last_seen": now,
        }
        values.update(fields)
        return WorkerInfo(**values)

    @staticmethod
    async def _listed(registry: Any, *ids: str) -> dict[str, WorkerInfo]:
        return {worker.id: worker for worker in await registry.list_workers() if worker.id in ids}

    @_needs("worker_registry")
    @_conformance_test
    async def test_worker_registry_keeps_records_until_unregistered(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A backend declaring `worker_registry` is a `WorkerRegistry`: `register_worker` stores a worker's
        record exactly as given, `list_workers` lists the live ones oldest `started_at` first,
        `heartbeat_worker` replaces a live record and returns True, and `unregister_worker` removes it at once;
        a heartbeat of an unregistered worker returns False and stores nothing."""
        async with opened(lssm_jobs_backend_factory()) as backend:
            assert isinstance(backend, WorkerRegistry), "worker_registry is declared, WorkerRegistry is not"
            first = self._worker("first", started_at=time.time() - 60)
            second = self._worker("second", queues=None, current_jobs=("j1", "j2"), in_flight=2, jobs_done=7)
            await backend.register_worker(second, 60_000)
            await backend.register_worker(first, 60_000)
            listed = await self._listed(backend, first.id, second.id)
            assert listed == {first.id: first, second.id: second}, "records must come back exactly as stored"
            order = [worker.id for worker in await backend.list_workers() if worker.id in listed]
            assert order == [first.id, second.id], "workers are listed oldest started_at first"

            busier = attrs.evolve(first, jobs_done=12, current_jobs=("j9",), in_flight=1, last_seen=time.time())
            assert await backend.heartbeat_worker(busier, 60_000) is True
            assert (await self._listed(backend, first.id))[first.id] == busier, "a heartbeat replaces the record"

            await backend.unregister_worker(first.id)
            assert set(await self._listed(backend, first.id, second.id)) == {second.id}
            assert await backend.heartbeat_worker(busier, 60_000) is False, "an unregistered worker is gone"
            assert await self._listed(backend, first.id) == {}, "a refused heartbeat must store nothing"
            await backend.unregister_worker(first.id)  # unknown ids are ignored
            await backend.unregister_worker(second.id)
            assert await self._listed(backend, second.id) == {}

    @_needs("worker_registry")
    @_conformance_test
    async def test_workers_that_miss_their_heartbeats_age_out(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A worker record lives `ttl_ms` after its last registration or heartbeat: a worker that keeps
        beating stays listed past its first time to live, one that stops beating is no longer listed once its
        time to live passed, and a heartbeat after that returns False and stores nothing."""
        async with opened(lssm_jobs_backend_factory()) as backend:
            assert isinstance(backend, WorkerRegistry)
            beating, silent = self._worker("beating"), self._worker("silent")
            ttl_ms = 1_000
            await backend.register_worker(beating, ttl_ms)
            await backend.register_worker(silent, ttl_ms)
            began = time.monotonic()
            while time.monotonic() - began < 2.5 * ttl_ms / 1000:
                assert await backend.heartbeat_worker(beating, ttl_ms) is True, "a live worker's heartbeat"
                await asyncio.sleep(ttl_ms / 6000)
            listed = await self._listed(backend, beating.id, silent.id)
            assert beating.id in listed, "a worker that keeps beating must stay listed"
            assert silent.id not in listed, "a worker that missed its heartbeats must age out"
            assert await backend.heartbeat_worker(silent, ttl_ms) is False, "an aged-out worker is gone"
            assert silent.id not in await self._listed(backend, silent.id), "a refused heartbeat stored it"
            await backend.unregister_worker(beating.id)

    @_needs("worker_registry")
    @_conformance_test
    async def test_a_processing_queue_announces_itself_until_it_stops(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A queue processing jobs on a backend with `worker_registry` is listed by `list_workers` while it
        runs (its queues, concurrency, the jobs it runs now, the jobs it has done) and no longer after it
        stopped gracefully."""
        name = _type_name("announced")
        release = asyncio.Event()

        async def block(job: Job[Any]) -> None:
            if job.payload.get("wait"):
                await release.wait()

        async with self._queue(
            lssm_jobs_backend_factory, queues=["announced"], concurrency=3, worker_heartbeat=0.1
        ) as queue:
            queue.register(name, block)
            done = await queue.enqueue(name, {}, queue="announced")
            await queue.start()
            worker_id = queue.worker_id
            assert worker_id is not None, "a processing queue on this backend must announce itself"
            await self._completed(queue, done.id)
            running = await queue.enqueue(name, {"wait": True}, queue="announced")
            registry: Any = queue.backend

            async def busy() -> WorkerInfo | None:
                worker = (await self._listed(registry, worker_id)).get(worker_id)
                if worker is not None and worker.current_jobs == (running.id,) and worker.jobs_done >= 1:
                    return worker
                return None

            worker = await wait_until(busy, message="the worker announcing its running job and its done job")
            assert (worker.queues, worker.concurrency, worker.in_flight) == (("announced",), 3, 1)
            release.set()
            await self._completed(queue, running.id)
            await queue.stop()
            assert await self._listed(registry, worker_id) == {}, "a stopped worker must remove its record"

    # -- cancelling jobs (optional: BackendCapabilities.cancel) ------------------------------------------------

    async def _cancelled(self, queue: JobQueue, job_id: str, timeout: float = 10.0) -> None:
        """Wait until the job is ``cancelled`` (or gone, where finished jobs are not kept)."""

        async def ended() -> bool:
            job = await queue.get(job_id)
            if job is None:
                assert not self.completed_retained, f"cancelled job {job_id} vanished"
                return True
            assert job.status not in (JobStatus.COMPLETED, JobStatus.DEAD), f"job {job_id} ended {job.status}"
            return job.status is JobStatus.CANCELLED

        await wait_until(ended, timeout=timeout, message=f"job {job_id} cancelled")

    @_needs("cancel", "delay", "dedupe")
    @_conformance_test
    async def test_cancel_removes_waiting_jobs(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """`cancel` of a `pending` or `scheduled` job answers `removed`: the job is `cancelled` (counted under
        that status), never runs, and its dedupe key is free; cancelling it again, or a completed job,
        answers `finished`, and an unknown id `not_found`."""
        name = _type_name("cancelled")
        ran: list[str] = []
        async with self._queue(lssm_jobs_backend_factory, concurrency=2) as queue:
            queue.register(name, lambda job: ran.append(job.payload["kind"]))
            pending = await queue.enqueue(name, {"kind": "pending"}, dedupe_key="cancel-me")
            scheduled = await queue.enqueue(name, {"kind": "scheduled"}, delay_ms=200)
            assert await queue.cancel(pending.id) is CancelResult.REMOVED
            assert await queue.cancel(scheduled.id) is CancelResult.REMOVED
            for job in (pending, scheduled):
                stored = await queue.get(job.id)
                if self.completed_retained:
                    assert stored is not None and stored.status is JobStatus.CANCELLED, stored
                    assert await queue.cancel(job.id) is CancelResult.FINISHED
                else:
                    assert stored is None or stored.status is JobStatus.CANCELLED, stored
            if self.completed_retained:
                counts = await queue.counts()
                assert counts["default"].get(JobStatus.CANCELLED) == 2, counts
                assert not counts["default"].get(JobStatus.PENDING) and not counts["default"].get(
                    JobStatus.SCHEDULED
                ), counts
            again = await queue.enqueue(name, {"kind": "again"}, dedupe_key="cancel-me")
            assert again.id != pending.id, "a cancelled job's dedupe key must be free again"
            assert await queue.cancel(uuid.uuid4().hex) is CancelResult.NOT_FOUND
            await queue.start()
            await self._completed(queue, again.id)
            await asyncio.sleep(0.3)  # the cancelled scheduled job's time has come: it must still not run
            sentinel = await queue.enqueue(name, {"kind": "sentinel"})
            await self._completed(queue, sentinel.id)
            if self.completed_retained:
                assert await queue.cancel(again.id) is CancelResult.FINISHED
        assert sorted(ran) == ["again", "sentinel"], ran

    @_needs("cancel")
    @_conformance_test
    async def test_cancel_stops_a_running_async_handler(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """`cancel` of an `active` job answers `requested`; its async handler is cancelled at its next
        await and the job ends `cancelled` after that one attempt: not retried, not dead-lettered, with a
        `job.cancelled` event."""
        name = _type_name("stopped")
        recorder = _Recorder()
        started = asyncio.Event()
        interrupted: list[str] = []

        async def long(job: Job[Any]) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                interrupted.append(job.id)
                raise

        options = _no_jitter(max_retries=3)
        async with self._queue(lssm_jobs_backend_factory) as queue:
            queue.register(define_job_type(type=name, options=options, catalog=queue.catalog), long)
            queue.on("*", recorder.event)
            job = await queue.enqueue(name, {})
            await queue.start()
            await asyncio.wait_for(started.wait(), self.wake_bound)
            assert await queue.cancel(job.id) is CancelResult.REQUESTED
            await self._cancelled(queue, job.id)
            assert interrupted == [job.id]
            stored = await queue.get(job.id)
            assert stored is None or stored.attempt == 1, stored
            assert await queue.backend.get_dead(job.id) is None
            await asyncio.sleep(0.2)  # a retry (backoff 50 ms) would run by now
            assert interrupted == [job.id] and not recorder.named("job.retrying")
        cancelled = recorder.named("job.cancelled", job.id)
        assert len(cancelled) == 1 and getattr(cancelled[0], "running", None) is True, cancelled

    @_needs("cancel")
    @_conformance_test
    async def test_sync_handlers_see_the_cancel_flag(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A sync handler sees `job.cancelled` turn True after `cancel`: stopping (or failing) then makes the
        job `cancelled`, never retried; a handler that finishes anyway completes, reported by a
        `job.cancel_ignored` event."""
        stopper, ignorer = _type_name("stopper"), _type_name("ignorer")
        recorder = _Recorder()
        running: dict[str, threading.Event] = {stopper: threading.Event(), ignorer: threading.Event()}
        finish_ignorer = threading.Event()

        def stops(job: Job[Any]) -> None:
            running[stopper].set()
            deadline = time.monotonic() + 30
            while not job.cancelled and time.monotonic() < deadline:
                time.sleep(0.005)
            raise ValueError("stopped on request")  # any failure after a request is a cancellation

        def ignores(job: Job[Any]) -> None:
            running[ignorer].set()
            finish_ignorer.wait(30)

        options = _no_jitter(max_retries=3)
        async with self._queue(lssm_jobs_backend_factory, concurrency=2) as queue:
            queue.register(define_job_type(type=stopper, options=options, catalog=queue.catalog), stops)
            queue.register(define_job_type(type=ignorer, options=options, catalog=queue.catalog), ignores)
            queue.on("*", recorder.event)
            first = await queue.enqueue(stopper, {})
            second = await queue.enqueue(ignorer, {})
            await queue.start()
            await wait_until(lambda: all(event.is_set() for event in running.values()), message="both run")
            assert await queue.cancel(first.id) is CancelResult.REQUESTED
            assert await queue.cancel(second.id) is CancelResult.REQUESTED
            await self._cancelled(queue, first.id)
            await asyncio.sleep(0.1)
            finish_ignorer.set()
            await self._completed(queue, second.id)
            await wait_until(
                lambda: recorder.named("job.cancel_ignored", second.id), message="ignore reported"
            )
        assert not recorder.named("job.retrying") and not recorder.named("job.dead_lettered")
        assert len(recorder.named("job.cancelled", first.id)) == 1

    @_needs("cancel")
    @_conformance_test
    async def test_cancel_reaches_a_worker_of_another_queue_object(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A `cancel` made through another queue object (another process) reaches the worker running the
        job within its `cancel_poll_interval`: `cancel_requested` names the job until it settles."""
        name = _type_name("remote")
        started = asyncio.Event()

        async def long(job: Job[Any]) -> None:
            started.set()
            await asyncio.sleep(60)

        async with (
            self._queue(lssm_jobs_backend_factory, cancel_poll_interval=0.05) as worker,
            self._queue(lssm_jobs_backend_factory) as producer,
        ):
            worker.register(name, long)
            job = await producer.enqueue(name, {})
            other = await producer.enqueue(name, {}, delay_ms=60_000) if self._can("delay", worker) else None
            await worker.start()
            await asyncio.wait_for(started.wait(), self.wake_bound)
            ids = [job.id] if other is None else [job.id, other.id]
            assert await producer.backend.cancel_requested(ids) == set()
            assert await producer.cancel(job.id) is CancelResult.REQUESTED
            stored = await producer.get(job.id)
            assert stored is not None and (stored.cancel_requested or stored.status is not JobStatus.ACTIVE)
            await self._cancelled(producer, job.id, timeout=self.wake_bound)
            assert await producer.backend.cancel_requested(ids) == set()

    @staticmethod
    def _can(capability: str, queue: JobQueue) -> bool:
        return bool(getattr(queue.backend.capabilities, capability))

    @_needs("cancel", "dedupe", PULL)
    @_conformance_test
    async def test_settling_a_job_with_a_cancel_request(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A leased job's `cancel` answers `requested` and `cancel_requested` names it; `Delivery.cancel`,
        and also a `retry` or `release` of a job with a request, end it `cancelled`, its dedupe key free,
        never delivered again."""
        async with opened(lssm_jobs_backend_factory()) as backend:
            assert isinstance(backend, PullBackend)
            jobs = [_outgoing(dedupe_key=f"k{n}") for n in range(4)]
            await backend.push(jobs)
            deliveries = {d.id: d for d in await backend.lease(queues=None, limit=4, lease_ms=60_000, wait=0)}
            assert len(deliveries) == 4
            ids = [job.id for job in jobs]
            assert await backend.cancel_requested(ids) == set()
            for job in jobs[:3]:
                assert await backend.cancel(job.id) == "requested"
                record = await backend.get(job.id)
                assert record is not None and record.status is JobStatus.ACTIVE and record.cancel_requested
            assert await backend.cancel_requested(ids) == set(ids[:3])
            await deliveries[ids[0]].cancel()
            await deliveries[ids[1]].retry(run_at=time.time(), error="boom")
            await deliveries[ids[2]].release()
            await deliveries[ids[3]].ack()
            for job_id in ids[:3]:
                record = await backend.get(job_id)
                if self.completed_retained:
                    assert record is not None and record.status is JobStatus.CANCELLED, record
                else:
                    assert record is None or record.status is JobStatus.CANCELLED, record
                assert await backend.cancel(job_id) in (
                    ("finished",) if self.completed_retained else ("finished", "not_found")
                )
            assert await backend.cancel_requested(ids) == set()
            assert await backend.lease(queues=None, limit=4, lease_ms=60_000, wait=0) == []
            again = await backend.push([_outgoing(dedupe_key=f"k{n}") for n in range(3)])
            assert all(result.created for result in again), "a cancelled job's dedupe key must be free"

    @_needs("cancel", "leases", PULL)
    @_conformance_test
    async def test_a_job_whose_worker_died_after_a_cancel_request_is_cancelled(
        self, lssm_jobs_backend_factory: BackendFactory
    ) -> None:
        """A job with a cancel request whose lease expires (its worker died before stopping it) is not
        delivered again: a later `lease` leaves it `cancelled`."""
        async with opened(lssm_jobs_backend_factory()) as backend:
            assert isinstance(backend, PullBackend)
            doomed, other = _outgoing(), _outgoing()
            await backend.push([doomed])
            leased = await backend.lease(queues=None, limit=1, lease_ms=200, wait=0)
            assert [delivery.id for delivery in leased] == [doomed.id]
            assert await backend.cancel(doomed.id) == "requested"
            await asyncio.sleep(0.4)  # the lease expires: its worker died
            await backend.push([other])
            again = await backend.lease(queues=None, limit=2, lease_ms=60_000, wait=0)
            assert [delivery.id for delivery in again] == [other.id], "a cancelled job was delivered again"
            record = await backend.get(doomed.id)
            if self.completed_retained:
                assert record is not None and record.status is JobStatus.CANCELLED, record
            else:
                assert record is None or record.status is JobStatus.CANCELLED, record

    # -- progress (optional: BackendCapabilities.progress) ------------------------------------------------------

    @_needs("progress")
    @_conformance_test
    async def test_progress_is_stored_rate_limited(self, lssm_jobs_backend_factory: BackendFactory) -> None:
        """A handler's `job.progress` reports are stored with the job and read back by `get`: at most one
        write per progress interval (a `job.progress` event each), the last report always stored, also from
        a sync handler (`job.progress_sync`); `set_progress` of an unknown or finished job stores nothing."""
        chatty, steady = _type_name("chatty"), _type_name("steady")
        recorder = _Recorder()
        reported = asyncio.Event()
        finish = asyncio.Event()

        async def chatter(job: Job[Any]) -> None:
            for step in range(1, 51):
                await job.progress(step / 50, f"step {step}", step=step)
            reported.set()
            await finish.wait()

        def sync_reporter(job: Job[Any]) -> None:
            job.progress_sync(0.25)
            job.progress_sync(0.75, "three quarters", rows=3)

        async with self._queue(lssm_jobs_backend_factory, progress_interval=0.3) as queue:
            queue.register(chatty, chatter)
            queue.register(steady, sync_reporter)
            queue.on("job.progress", recorder.event)
            job = await queue.enqueue(chatty, {})
            await queue.start()
            await asyncio.wait_for(reported.wait(), self.wake_bound)

            async def last_stored() -> bool:
                stored = await queue.get(job.id)
                assert stored is not None
                return stored.last_progress is not None and stored.last_progress.fraction == 1.0

            await wait_until(last_stored, timeout=self.wake_bound, message="the last report stored")
            stored = await queue.get(job.id)
            assert stored is not None and stored.last_progress is not None
            assert stored.last_progress.message == "step 50" and dict(stored.last_progress.data) == {
                "step": 50
            }
            events = recorder.named("job.progress", job.id)
            assert 2 <= len(events) <= 3, f"50 quick reports must give 2 or 3 writes, got {len(events)}"
            assert (
                getattr(events[0], "fraction", None) == 0.02 and getattr(events[-1], "fraction", None) == 1.0
            )
            finish.set()
            await self._completed(queue, job.id)
            assert await queue.backend.set_progress(job.id, '{"fraction":0.5}') is False
            assert await queue.backend.set_progress(uuid.uuid4().hex, '{"fraction":0.5}') is False
            if self.completed_retained:
                done = await queue.get(job.id)
                assert done is not None and done.last_progress is not None
                assert done.last_progress.fraction == 1.0
            synced = await queue.enqueue(steady, {})
            await wait_until(
                lambda: (
                    recorder.named("job.progress", synced.id)[-1:]
                    and getattr(recorder.named("job.progress", synced.id)[-1], "fraction", None) == 0.75
                ),
                message="the sync handler's last report written",
            )
            if self.completed_retained:
                await self._completed(queue, synced.id)
                done = await queue.get(synced.id)
                assert done is not None and done.last_progress is not None
                assert (done.last_progress.fraction, done.last_progress.message) == (0.75, "three quarters")


async def _ack(delivery: Delivery) -> None:
    await delivery.ack()


async def _retry(delivery: Delivery) -> None:
    await delivery.retry(run_at=time.time(), error="stale retry")


async def _dead_letter(delivery: Delivery) -> None:
    await delivery.dead_letter(reason="stale dead letter", error=None, traceback=None)


async def _release(delivery: Delivery) -> None:
    await delivery.release()


_STALE_SETTLES: tuple[Callable[[Delivery], Coroutine[Any, Any, None]], ...] = (
    _ack,
    _retry,
    _dead_letter,
    _release,
)


def conformance_test_names() -> Sequence[str]:
    """Names of every conformance test (used by the docs check)."""
    return sorted(name for name in vars(BackendConformance) if name.startswith("test_"))


@attrs.frozen(kw_only=True)
class ConformanceRule:
    """One conformance test: its name, the rule it checks (its docstring) and what it needs (capability
    names, or ``"pull"`` for tests that lease through ``PullBackend.lease`` themselves)."""

    name: str
    rule: str
    needs: tuple[str, ...]


def conformance_rules() -> list[ConformanceRule]:
    """Every conformance test with the rule it checks, in the order of the suite (used by the docs check)."""
    rules = []
    for name, test in vars(BackendConformance).items():
        if name.startswith("test_"):
            text = " ".join((test.__doc__ or "").split())
            rules.append(ConformanceRule(name=name, rule=text, needs=_NEEDS.get(name, ())))
    return rules
