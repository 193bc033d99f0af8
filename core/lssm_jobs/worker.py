"""The shared dispatcher, which decides every job's outcome (the loop that feeds it: :mod:`lssm_jobs.consumer`).

One dispatcher for every backend keeps semantics identical everywhere: decode, find the handler, validate
(and upgrade) the payload, run with a timeout, then settle: ack, retry at backoff, or dead-letter. Jobs that
cannot run at all (undecodable, unknown type, invalid payload) are dead-lettered with the reason: never
dropped, never a crashed worker.
"""

from __future__ import annotations

import asyncio
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

from lssm_jobs.backends.base import Delivery, QueueBackend
from lssm_jobs.cancellation import (
    DEFAULT_CANCEL_POLL_INTERVAL,
    DEFAULT_PROGRESS_INTERVAL,
    JobControl,
    RunningJobs,
    interrupted_for_cancel,
)
from lssm_jobs.consumer import cancelled_for_stop
from lssm_jobs.consumer import keep_leases_alive as keep_leases_alive  # where push/stream backends found it
from lssm_jobs.consumer import settle as _settle
from lssm_jobs.errors import (
    InvalidResultError,
    JobTimeoutError,
    JobValidationError,
    PermanentJobError,
    RetryJob,
)
from lssm_jobs.events import (
    EventBus,
    JobCancelIgnored,
    JobCancelled,
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
from lssm_jobs.results.recording import ResultRecorder
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


def _traceback(error: BaseException) -> str:
    return "".join(traceback_module.format_exception(error))[-_MAX_TRACEBACK_CHARS:]


@attrs.frozen(kw_only=True)
class _Prepared:
    envelope: Envelope
    job: Job[Any]
    handler: Handler
    is_async: bool
    job_type: JobType[Any, Any] | None


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
        backend: QueueBackend | None = None,
        cancel_poll_interval: float = DEFAULT_CANCEL_POLL_INTERVAL,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        results: ResultRecorder | None = None,
    ) -> None:
        self.handlers = handlers
        self.catalog = catalog
        self.serializer = serializer
        self.events = events
        self.executor = executor
        self.default_timeout_ms = default_timeout_ms
        self.clock = clock
        #: Stores the results of job types that declare one (see :mod:`lssm_jobs.results.recording`).
        self.results = results
        self._is_async: dict[Handler, bool] = {}
        #: The running jobs' controls (cancel requests, progress) when there is a ``backend``: on one that
        #: cannot cancel or store progress, ``job.progress`` raises UnsupportedOptionError naming it.
        self.running: RunningJobs | None = None
        if backend is not None:
            self.running = RunningJobs(
                backend,
                events,
                cancel_poll_interval=cancel_poll_interval,
                progress_interval=progress_interval,
            )
        #: Deliveries taken to an outcome (completed, retried, dead-lettered); released ones are not counted.
        self.jobs_done = 0
        #: The jobs being dispatched now: ``id(delivery)`` -> job id (what a worker's heartbeat announces).
        self.current: dict[int, str] = {}

    async def close(self) -> None:
        """Stop the background work of the dispatcher (the poll for cancel requests)."""
        if self.running is not None:
            await self.running.close()

    async def __call__(self, delivery: Delivery) -> None:
        current, key = self.current, id(delivery)
        current[key] = delivery.id
        try:
            prepared = await self._prepare(delivery)
            if prepared is not None:
                await self._run(delivery, prepared)
            self.jobs_done += 1
        except asyncio.CancelledError:
            await _settle(delivery.release, delivery, "release")
            raise
        except Exception:  # a bug in a backend's settle path must not kill the consumer
            log.exception("dispatching job %s failed unexpectedly", delivery.id)
        finally:
            del current[key]

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
        return _Prepared(envelope=envelope, job=job, handler=handler, is_async=is_async, job_type=job_type)

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
        control = None if self.running is None else self.running.begin(job, is_async=prepared.is_async)
        try:
            if control is not None:
                control.in_handler = True
            if prepared.is_async:
                outcome = prepared.handler(job)
            else:
                outcome = self._run_in_thread(prepared.handler, job)
            if timeout_ms:
                value = await _with_timeout(outcome, timeout_ms / 1000)
            elif inspect.isawaitable(outcome):
                value = await outcome
            else:
                value = outcome
        except asyncio.TimeoutError:
            duration_ms = (time.perf_counter() - started) * 1000
            if await self._stopped_on_request(delivery, job, control, duration_ms):
                return
            await self._emit(JobTimedOut, job, timeout_ms=int(timeout_ms or 0))
            error = JobTimeoutError(f"job {job.type!r} ran longer than its timeout of {timeout_ms} ms")
            await self._failed(delivery, job, error, duration_ms)
            return
        except asyncio.CancelledError as cancelled:
            if control is not None and interrupted_for_cancel(control.task) and not _stopping_worker():
                control.absorb_interrupt()  # a cancel request interrupted the handler: settled cancelled
            elif _cancelled_from_outside():
                if control is not None and not control.finish_quietly():
                    await control.finish()
                raise  # the worker is stopping: the dispatcher releases the job
            duration_ms = (time.perf_counter() - started) * 1000
            if await self._stopped_on_request(delivery, job, control, duration_ms):
                return
            # The handler raised CancelledError itself (or awaited something cancelled): its failure.
            await self._failed(delivery, job, cancelled, duration_ms)
            return
        except BaseException as error:  # SystemExit, KeyboardInterrupt...: the job's failure too
            duration_ms = (time.perf_counter() - started) * 1000
            if await self._stopped_on_request(delivery, job, control, duration_ms):
                return
            await self._failed(delivery, job, _handler_error(error), duration_ms)
            return
        duration_ms = (time.perf_counter() - started) * 1000
        if control is not None and not control.finish_quietly():
            await self._finish_control(job, control, "completed")
        job_type = prepared.job_type
        if job_type is not None and job_type.result is not None and self.results is not None:
            # Stored before the ack: once the job shows as completed, its result is readable.
            try:
                encoded = self.results.encode(job_type, value)
            except InvalidResultError as error:
                await self._failed(delivery, job, error, duration_ms)
                return
            await _settle(
                functools.partial(self.results.completed, job.id, job_type, encoded),
                delivery,
                "store the result of",
            )
        await _settle(delivery.ack, delivery, "ack")
        await self._emit(JobCompleted, job, duration_ms=duration_ms)

    async def _finish_control(self, job: Job[Any], control: JobControl, outcome: str) -> None:
        """The handler returned: store its waiting progress, and report a cancel request it did not act on."""
        control.in_handler = False
        if control.interrupted:  # the request came as the handler returned: the interrupt is moot
            control.absorb_interrupt()
        await control.finish()
        if control.cancelled:
            log.warning(
                "job %s (%s) ignored its cancel request and %s (a handler stops by letting the "
                "CancelledError through, or by checking job.cancelled)",
                job.id,
                job.type,
                outcome,
            )
            await self._emit(JobCancelIgnored, job, outcome=outcome)

    async def _stopped_on_request(
        self, delivery: Delivery, job: Job[Any], control: JobControl | None, duration_ms: float
    ) -> bool:
        """After the handler failed (or was interrupted): when a cancel request reached it, settle the job
        cancelled (never retried or dead-lettered) and return True. Otherwise store its waiting progress and
        return False (the failure is handled as usual)."""
        if control is None:
            return False
        control.in_handler = False
        if control.interrupted:  # the handler turned the interrupt into another error: take it back too
            control.absorb_interrupt()
        if control.finish_quietly():
            return False  # no cancel request: the failure is handled as usual
        await control.finish()
        if not control.cancelled:
            return False
        await _settle(delivery.cancel, delivery, "cancel")
        log.info("job %s (%s) stopped on a cancel request", job.id, job.type)
        await self._emit(JobCancelled, job, running=True, duration_ms=duration_ms)
        return True

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
        await self._record_failure(delivery, job.type, error=description, reason=reason)
        await self._emit(JobFailed, job, error=description, traceback=trace, duration_ms=duration_ms)
        await self._emit(JobDeadLettered, job, reason=reason, error=description)

    async def _record_failure(self, delivery: Delivery, job_type: str, *, error: str | None, reason: str) -> None:
        """Store a dead-lettered job's failure for those waiting for its result (types with a result type)."""
        definition = self.catalog.get(job_type) if self.results is not None else None
        if definition is not None and definition.result is not None and self.results is not None:
            await _settle(
                functools.partial(self.results.failed, delivery.id, definition, error=error, reason=reason),
                delivery,
                "store the failure of",
            )

    async def _dead_letter(self, delivery: Delivery, job_type: str, reason: str) -> None:
        log.warning("job %s dead-lettered before running: %s", delivery.id, reason)
        await _settle(
            functools.partial(delivery.dead_letter, reason=reason, error=None, traceback=None),
            delivery,
            "dead-letter",
        )
        await self._record_failure(delivery, job_type, error=None, reason=reason)
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

    async def _with_timeout(outcome: Any, seconds: float) -> Any:
        # asyncio.timeout runs the handler in the dispatcher's own task: no task of its own to start, and
        # whatever it raises arrives here.
        async with asyncio.timeout(seconds):
            return await _awaitable(outcome)

    def _cancelled_from_outside() -> bool:
        """Whether the running task was cancelled (the worker stopping), rather than a CancelledError
        raised from inside a handler."""
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    def _stopping_worker() -> bool:
        """Whether the worker's stop cancelled the running task (also when a cancel request did too)."""
        task = asyncio.current_task()
        return task is not None and cancelled_for_stop(task)

else:  # pragma: no cover - Python 3.10

    async def _with_timeout(outcome: Any, seconds: float) -> Any:
        return await asyncio.wait_for(_guarded(_awaitable(outcome)), seconds)

    def _cancelled_from_outside() -> bool:
        # No Task.cancelling(): the worker's stop paths mark the tasks they cancel (consumer.cancel_for_stop).
        task = asyncio.current_task()
        return task is not None and cancelled_for_stop(task)

    _stopping_worker = _cancelled_from_outside


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
