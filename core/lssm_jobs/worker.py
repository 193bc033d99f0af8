"""The shared dispatcher, which decides every job's outcome, and the consumer loop of pull backends.

One dispatcher for every backend keeps semantics identical everywhere: decode, find the handler, validate
(and upgrade) the payload, run with a timeout, then settle: ack, retry at backoff, or dead-letter. Jobs that
cannot run at all (undecodable, unknown type, invalid payload) are dead-lettered with the reason: never
dropped, never a crashed worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import sys
import time
import traceback as traceback_module
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any

import attrs

from lssm_jobs.backends.base import ConsumeOptions, Delivery, PullBackend
from lssm_jobs.errors import JobTimeoutError, JobValidationError, PermanentJobError, RetryJob
from lssm_jobs.events import (
    EventBus,
    JobCompleted,
    JobDeadLettered,
    JobEvent,
    JobFailed,
    JobRetrying,
    JobStarted,
    JobTimedOut,
)
from lssm_jobs.jobs import Job, JobCatalog, JobStatus, JobType
from lssm_jobs.limits import MAX_DELAY_MS
from lssm_jobs.queue_selection import QueueSelection
from lssm_jobs.retry import backoff_delay_ms
from lssm_jobs.serialization import Envelope, Serializer, job_from_envelope, structure_payload

log = logging.getLogger("lssm_jobs.worker")

Handler = Callable[[Job[Any]], Any]

#: A job whose worker died (lease expired) is delivered again even without retries left, this many extra
#: times; past that it is treated as a poison job (it keeps killing its worker) and dead-lettered.
LOST_WORKER_GRACE = 2
_MAX_ERROR_CHARS = 2_000
_MAX_TRACEBACK_CHARS = 16_000


def _describe(error: BaseException) -> str:
    try:
        message = str(error)
    except Exception:  # an exception whose __str__ fails is still its job's failure
        message = "<the exception's str() failed>"
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text[:_MAX_ERROR_CHARS]


def _brief(error: BaseException) -> str:
    """A short description of a backend error for logs: a driver's message may quote job data (payloads can
    hold personal data or secrets), so only its first line, cut short, is logged."""
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first[:120]}{'...' if len(first) > 120 else ''}"


def _traceback(error: BaseException) -> str:
    return "".join(traceback_module.format_exception(error))[-_MAX_TRACEBACK_CHARS:]


@attrs.frozen(kw_only=True)
class _Prepared:
    envelope: Envelope
    job: Job[Any]
    handler: Handler
    is_async: bool


class Dispatcher:
    """Runs one delivery to its outcome. Backends call it (as ``dispatch(delivery)``); it never raises,
    except ``CancelledError`` after releasing the delivery when the worker is stopping."""

    def __init__(
        self,
        *,
        handlers: Mapping[str, Handler],
        catalog: JobCatalog,
        serializer: Serializer,
        events: EventBus,
        executor: Executor | None = None,
        default_timeout_ms: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.handlers = handlers
        self.catalog = catalog
        self.serializer = serializer
        self.events = events
        self.executor = executor
        self.default_timeout_ms = default_timeout_ms
        self.clock = clock
        self._is_async: dict[Handler, bool] = {}

    async def __call__(self, delivery: Delivery) -> None:
        try:
            prepared = await self._prepare(delivery)
            if prepared is not None:
                await self._run(delivery, prepared)
        except asyncio.CancelledError:
            await _settle(delivery.release, delivery, "release")
            raise
        except Exception:  # a bug in a backend's settle path must not kill the consumer
            log.exception("dispatching job %s failed unexpectedly", delivery.id)

    # -- before running: decode, route, validate --------------------------------------------------------

    async def _prepare(self, delivery: Delivery) -> _Prepared | None:
        try:
            envelope = self.serializer.loads(delivery.body)
        except Exception as error:
            await self._dead_letter(delivery, "?", f"undecodable envelope ({self.serializer.name}): {error}")
            return None
        handler = self.handlers.get(envelope.type)
        if handler is None:
            await self._dead_letter(
                delivery, envelope.type, f"no handler registered for job type {envelope.type!r}"
            )
            return None
        max_attempts = envelope.options.max_retries + 1
        if delivery.attempt > max_attempts + LOST_WORKER_GRACE:
            await self._dead_letter(
                delivery,
                envelope.type,
                f"delivered {delivery.attempt} times without settling (max {max_attempts} attempts): its "
                "worker keeps dying (killed, out of memory, lost connection); treated as a poison job",
            )
            return None
        job_type = self.catalog.get(envelope.type)
        try:
            payload = self._typed_payload(job_type, envelope) if job_type is not None else envelope.payload
        except (JobValidationError, _VersionError) as error:
            await self._dead_letter(delivery, envelope.type, f"invalid payload: {error}")
            return None
        job = job_from_envelope(
            envelope,
            payload,
            status=JobStatus.ACTIVE,
            attempt=delivery.attempt,
            version=None if job_type is None else job_type.version,
        )
        is_async = self._is_async.get(handler)
        if is_async is None:
            is_async = self._is_async[handler] = _is_async_callable(handler)
        return _Prepared(envelope=envelope, job=job, handler=handler, is_async=is_async)

    def _typed_payload(self, job_type: JobType[Any], envelope: Envelope) -> Any:
        data = envelope.payload
        if envelope.version > job_type.version:
            raise _VersionError(
                f"payload version {envelope.version} is newer than this worker's {job_type.type!r} "
                f"version {job_type.version}; deploy the newer worker, then replay"
            )
        for version in range(envelope.version, job_type.version):
            upgrade = job_type.upgraders.get(version)
            if upgrade is None:
                raise _VersionError(
                    f"payload version {envelope.version} cannot be upgraded to {job_type.version}: no "
                    f"upgrader from version {version}"
                )
            try:
                data = upgrade(data)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # user code: even SystemExit is the job's failure
                raise _VersionError(
                    f"upgrading the payload from version {version} to {version + 1} failed: {_describe(error)}"
                ) from error
        return structure_payload(job_type, data)

    # -- running and settling -----------------------------------------------------------------------------

    async def _emit(self, event_type: type[JobEvent], job: Job[Any], **fields: Any) -> None:
        """Emit a job event, building it only when someone listens (this runs several times per job)."""
        if self.events.wants(event_type.name):
            await self.events.emit(
                event_type(
                    timestamp=self.clock(),
                    job_id=job.id,
                    job_type=job.type,
                    queue=job.queue,
                    attempt=job.attempt,
                    **fields,
                )
            )

    async def _run(self, delivery: Delivery, prepared: _Prepared) -> None:
        job, envelope = prepared.job, prepared.envelope
        waited_s = self.clock() - max(envelope.run_at, envelope.created_at)
        await self._emit(JobStarted, job, wait_ms=max(0.0, waited_s * 1000))
        started = time.perf_counter()
        timeout_ms = envelope.options.timeout_ms or self.default_timeout_ms
        try:
            if prepared.is_async:
                outcome = prepared.handler(job)
            else:
                outcome = self._run_in_thread(prepared.handler, job)
            if timeout_ms:
                await _with_timeout(outcome, timeout_ms / 1000)
            elif inspect.isawaitable(outcome):
                await outcome
        except asyncio.TimeoutError:
            duration_ms = (time.perf_counter() - started) * 1000
            await self._emit(JobTimedOut, job, timeout_ms=int(timeout_ms or 0))
            error = JobTimeoutError(f"job {job.type!r} ran longer than its timeout of {timeout_ms} ms")
            await self._failed(delivery, job, error, duration_ms)
            return
        except asyncio.CancelledError as cancelled:
            if _cancelled_from_outside():
                raise  # the worker is stopping: the dispatcher releases the job
            # The handler raised CancelledError itself (or awaited something cancelled): its failure.
            await self._failed(delivery, job, cancelled, (time.perf_counter() - started) * 1000)
            return
        except BaseException as error:  # SystemExit, KeyboardInterrupt...: the job's failure too
            await self._failed(delivery, job, _handler_error(error), (time.perf_counter() - started) * 1000)
            return
        duration_ms = (time.perf_counter() - started) * 1000
        await _settle(delivery.ack, delivery, "ack")
        await self._emit(JobCompleted, job, duration_ms=duration_ms)

    def _run_in_thread(self, handler: Handler, job: Job[Any]) -> Awaitable[Any]:
        # Plain functions run in a thread pool so a blocking handler never stalls the event loop;
        # copy_context keeps contextvars (request ids, tracing) visible inside the handler.
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, handler, job)
        return loop.run_in_executor(self.executor, call)

    async def _failed(
        self, delivery: Delivery, job: Job[Any], error: BaseException, duration_ms: float
    ) -> None:
        description = _describe(error)
        permanent = isinstance(error, PermanentJobError)
        if not permanent and job.attempt < job.max_retries + 1:
            if isinstance(error, RetryJob) and type(error.delay_ms) is int and error.delay_ms >= 0:
                # Capped like delay_ms at enqueue, so the retry time stays representable everywhere.
                delay_ms = min(error.delay_ms, MAX_DELAY_MS)
            else:
                delay_ms = backoff_delay_ms(job.options, job.attempt)
            retry_at = self.clock() + delay_ms / 1000
            await _settle(
                functools.partial(delivery.retry, run_at=retry_at, error=description), delivery, "retry"
            )
            log.info(
                "job %s (%s) attempt %d failed, retrying in %d ms: %s",
                job.id,
                job.type,
                job.attempt,
                delay_ms,
                description,
            )
            await self._emit(
                JobRetrying,
                job,
                error=description,
                delay_ms=delay_ms,
                retry_at=retry_at,
                duration_ms=duration_ms,
            )
            return
        reason = (
            f"permanent failure on attempt {job.attempt}"
            if permanent
            else f"failed after {job.attempt} attempt{'s' if job.attempt != 1 else ''}"
        )
        trace = _traceback(error)
        await _settle(
            functools.partial(delivery.dead_letter, reason=reason, error=description, traceback=trace),
            delivery,
            "dead-letter",
        )
        await self._emit(JobFailed, job, error=description, traceback=trace, duration_ms=duration_ms)
        await self._emit(JobDeadLettered, job, reason=reason, error=description)

    async def _dead_letter(self, delivery: Delivery, job_type: str, reason: str) -> None:
        log.warning("job %s dead-lettered before running: %s", delivery.id, reason)
        await _settle(
            functools.partial(delivery.dead_letter, reason=reason, error=None, traceback=None),
            delivery,
            "dead-letter",
        )
        await self.events.emit(
            JobDeadLettered(
                timestamp=self.clock(),
                job_id=delivery.id,
                job_type=job_type,
                queue=delivery.queue,
                attempt=delivery.attempt,
                reason=reason,
            )
        )


class _VersionError(Exception):
    pass


class _HandlerExit(Exception):
    """Carries a ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``, a
    custom subclass) out of a handler's task as an ordinary exception: asyncio re-raises ``SystemExit``
    and ``KeyboardInterrupt`` out of the event loop, which would stop the whole worker."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _handler_error(error: BaseException) -> BaseException:
    return error.error if isinstance(error, _HandlerExit) else error


async def _guarded(awaitable: Awaitable[Any]) -> Any:
    """Await a handler's coroutine in its own task (``wait_for`` on Python 3.10), turning what is not an
    ``Exception`` into one, so the task never re-raises it out of the event loop."""
    try:
        return await awaitable
    except (asyncio.CancelledError, Exception):
        raise
    except BaseException as error:
        raise _HandlerExit(error) from error


if sys.version_info >= (3, 11):

    async def _with_timeout(outcome: Any, seconds: float) -> None:
        # asyncio.timeout runs the handler in the dispatcher's own task: no task of its own to start, and
        # whatever it raises arrives here.
        async with asyncio.timeout(seconds):
            await _awaitable(outcome)

    def _cancelled_from_outside() -> bool:
        """Whether the running task was cancelled (the worker stopping), rather than a CancelledError
        raised from inside a handler."""
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

else:  # pragma: no cover - Python 3.10

    async def _with_timeout(outcome: Any, seconds: float) -> None:
        await asyncio.wait_for(_guarded(_awaitable(outcome)), seconds)

    def _cancelled_from_outside() -> bool:
        return True  # no Task.cancelling() to tell: keep releasing, as a stop does


def _is_async_callable(handler: Callable[..., Any]) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
    )


async def _awaitable(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


_SETTLE_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0)


async def _settle(operation: Callable[[], Awaitable[None]], delivery: Delivery, what: str) -> None:
    """Run a settle operation, retrying briefly on connection errors (a backend restarting). If it still
    fails, the job is not lost: its lease expires and it is delivered again (at-least-once)."""
    last: BaseException | None = None
    for delay in (0.0, *_SETTLE_DELAYS):
        if delay:
            await asyncio.sleep(delay)
        try:
            await operation()
            return
        except (ConnectionError, OSError, TimeoutError) as error:
            last = error
        except Exception as error:
            last = error
            break
    log.error(
        "could not %s job %s: %s; it will be delivered again after its lease expires",
        what,
        delivery.id,
        _brief(last) if last else "unknown error",
    )


async def _wait_or_stop(stopping: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout)


class LeaseGuard(Delivery):
    """A delivery whose lease extensions and settling never overlap.

    A heartbeat that extends a lease while the job's own ack, retry, dead-letter or release is under way
    finds the job no longer held, and would report the lease lost although nothing was. So: once settling
    starts, ``extend`` returns True without touching the backend (nothing is left to keep); an extension
    already under way finishes before the settle operation starts. ``extend`` returns False only when the
    backend says the lease was really lost.

    The pull consumer wraps every delivery in one; backends that run their own consumption loop and call
    :func:`keep_leases_alive` should wrap theirs too, and hand the same guard to the dispatcher.
    """

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.id = delivery.id
        self.attempt = delivery.attempt
        self.body = delivery.body
        self.queue = delivery.queue
        self.lease_ms = delivery.lease_ms
        self._settling = False
        self._lock: asyncio.Lock | None = None  # made by the first extension: most jobs never need one

    async def extend(self, lease_ms: int) -> bool:
        if self._settling:
            return True
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.settling:  # it may have started while this waited for the lock
                return True
            return await self.delivery.extend(lease_ms)

    @property
    def settling(self) -> bool:
        """Whether settling has started (no extension starts any more)."""
        return self._settling

    async def _settle_alone(self) -> None:
        """No extension starts from now on; wait for one under way to finish."""
        self._settling = True
        if self._lock is not None:
            async with self._lock:
                pass

    async def ack(self) -> None:
        await self._settle_alone()
        await self.delivery.ack()

    async def retry(self, *, run_at: float, error: str) -> None:
        await self._settle_alone()
        await self.delivery.retry(run_at=run_at, error=error)

    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        await self._settle_alone()
        await self.delivery.dead_letter(reason=reason, error=error, traceback=traceback)

    async def release(self) -> None:
        await self._settle_alone()
        await self.delivery.release()


async def keep_leases_alive(in_flight: Mapping[Any, Delivery], lease_ms: int) -> None:
    """Extend the leases of every running job every third of the lease, in one loop for all of them.

    Runs until cancelled. Backends that own their consumption loop (push, stream) can run it over their own
    map of in-flight deliveries (wrapped in :class:`LeaseGuard`, so that a job settling meanwhile is not
    reported as a lost lease).
    """
    interval = max(lease_ms / 3000, 0.01)
    while True:
        await asyncio.sleep(interval)
        deliveries = [delivery for delivery in in_flight.values() if delivery.lease_ms]
        if not deliveries:
            continue
        results = await asyncio.gather(
            *(delivery.extend(lease_ms) for delivery in deliveries), return_exceptions=True
        )
        for delivery, result in zip(deliveries, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("could not extend the lease of job %s: %s", delivery.id, _brief(result))
            elif result is False:
                log.warning(
                    "lost the lease of job %s (it ran longer than its lease without a heartbeat getting "
                    "through); another worker may run it too",
                    delivery.id,
                )


async def _run_in_slot(
    dispatch: Callable[[Delivery], Awaitable[None]],
    delivery: Delivery,
    slots: asyncio.Semaphore,
    queued: set[asyncio.Future[None]],
    stopping: asyncio.Event,
) -> None:
    """Run a prefetched delivery once one of the ``concurrency`` slots is free; give it back unrun when
    the worker stops first. Cancelled while waiting (its task in ``queued``), it leaves the release to
    the consumer, which also releases deliveries whose task was cancelled before it ever ran."""
    try:
        await slots.acquire()
    finally:
        queued.discard(asyncio.current_task())  # type: ignore[arg-type,unused-ignore]
    try:
        if stopping.is_set():
            await _settle(delivery.release, delivery, "release")
        else:
            await dispatch(delivery)
    finally:
        slots.release()


async def run_pull_consumer(
    backend: PullBackend,
    dispatch: Callable[[Delivery], Awaitable[None]],
    options: ConsumeOptions,
    stopping: asyncio.Event,
) -> None:
    """The consumption loop of every pull backend: lease as many jobs as there are free slots (plus
    ``prefetch``), run each in its own task, keep their leases alive, and on stop finish or release what
    is in flight.

    Memory stays bounded whatever the backlog: at most ``concurrency + prefetch`` jobs are leased by this
    worker at any time, and at most ``concurrency`` of them run; prefetched jobs wait for a slot (their
    leases kept alive) and are released unrun on stop.
    """
    in_flight: dict[asyncio.Future[None], Delivery] = {}
    heartbeat = asyncio.create_task(keep_leases_alive(in_flight, options.lease_ms))
    failures = 0
    queues = list(options.queues) if options.queues else None
    # Strict order or weights (lssm_jobs.queue_selection): consulted once per lease round.
    selection = options.queues if isinstance(options.queues, QueueSelection) else None
    capacity = options.concurrency + options.prefetch
    # Without prefetch every leased job has a slot: no semaphore on the hot path.
    slots = asyncio.Semaphore(options.concurrency) if options.prefetch else None
    queued: set[asyncio.Future[None]] = set()  # prefetched jobs waiting for a slot
    try:
        while not stopping.is_set():
            free = capacity - len(in_flight)
            if free <= 0:
                stop_waiter: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
                waiting: set[asyncio.Future[Any]] = {*in_flight, stop_waiter}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                stop_waiter.cancel()
                continue
            try:
                if selection is not None:
                    deliveries = await selection.lease(
                        backend, limit=free, lease_ms=options.lease_ms, wait=options.poll_interval
                    )
                else:
                    deliveries = await backend.lease(
                        queues=queues, limit=free, lease_ms=options.lease_ms, wait=options.poll_interval
                    )
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                delay = min(0.1 * 2 ** min(failures, 7), 10.0)
                log.error("leasing jobs failed (%s); retrying in %.1fs", _brief(error), delay)
                await _wait_or_stop(stopping, delay)
                continue
            for leased in deliveries:
                delivery = LeaseGuard(leased)
                if stopping.is_set():
                    await _settle(delivery.release, delivery, "release")
                    continue
                if slots is None:
                    task: asyncio.Future[None] = asyncio.ensure_future(dispatch(delivery))
                else:
                    task = asyncio.ensure_future(_run_in_slot(dispatch, delivery, slots, queued, stopping))
                    queued.add(task)
                in_flight[task] = delivery
                task.add_done_callback(_forget(in_flight))
            if deliveries:
                # Let the new jobs start before the next lease request is built and sent: on an idle
                # worker that request would otherwise sit between a job's arrival and its handler.
                await asyncio.sleep(0)
    finally:
        # Prefetched jobs that never got a slot are released at once, not after the shutdown timeout.
        unstarted = [(task, in_flight[task]) for task in queued if task in in_flight]
        for task, _ in unstarted:
            task.cancel()
        await asyncio.gather(*(task for task, _ in unstarted), return_exceptions=True)
        for _, unrun in unstarted:
            await _settle(unrun.release, unrun, "release")
        if in_flight:
            _, pending = await asyncio.wait(set(in_flight), timeout=options.shutdown_timeout)
            for task in pending:
                log.warning(
                    "job %s did not finish within the shutdown timeout; releasing it", in_flight[task].id
                )
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)


def _forget(in_flight: dict[asyncio.Future[None], Delivery]) -> Callable[[asyncio.Future[None]], None]:
    def done(task: asyncio.Future[None]) -> None:
        in_flight.pop(task, None)

    return done
