"""Cancelling jobs and reporting progress: the worker's side of ``queue.cancel`` and ``job.progress``.

Every job a worker runs on a backend that can cancel or store progress gets a :class:`JobControl`, kept in
its dispatcher's :class:`RunningJobs` while the handler runs:

* **Cancel requests** reach a running job two ways: at once when ``queue.cancel`` is called on the queue
  whose worker runs it, and otherwise through a poll: while jobs run, the worker asks the backend every
  ``cancel_poll_interval`` (1 s by default) which of them have a request waiting
  (:meth:`~lssm_jobs.backends.base.QueueBackend.cancel_requested`, one call for all of them). So a
  request made in another process reaches the job within that interval. An async handler is then
  cancelled at its next ``await`` (its dispatch task is cancelled, marked so the dispatcher tells it apart
  from a worker stop and from the handler's own ``CancelledError``); a sync handler, running in a thread
  that cannot be interrupted, sees ``job.cancelled`` turn True.
* **Progress** reports are validated at once, then written at most once per ``progress_interval`` per
  job (0.5 s by default): a report inside the interval replaces the waiting one, which is written when the
  interval ends, and in any case before the job settles, so the last report is always stored. Each write
  is a ``job.progress`` event.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import sys
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lssm_jobs.consumer import brief_error
from lssm_jobs.errors import LssmJobsError, UnsupportedOptionError
from lssm_jobs.events import EventBus, JobProgressed
from lssm_jobs.jobs import Job, JobProgress, set_extra

if TYPE_CHECKING:
    from lssm_jobs.backends.base import QueueBackend

log = logging.getLogger("lssm_jobs.worker")
current_task = asyncio.current_task

#: Seconds between a worker's checks for cancel requests made in other processes, by default.
DEFAULT_CANCEL_POLL_INTERVAL = 1.0
#: Shortest time between two progress writes of one job, by default (seconds).
DEFAULT_PROGRESS_INTERVAL = 0.5
MAX_PROGRESS_MESSAGE = 1_000
MAX_PROGRESS_DATA_BYTES = 4_096


class CancelResult(str, enum.Enum):
    """What :meth:`JobQueue.cancel <lssm_jobs.queue.JobQueue.cancel>` did."""

    REMOVED = "removed"  # the job was scheduled or pending: it is cancelled and will never run
    REQUESTED = "requested"  # the job is running: its worker was asked to stop it
    NOT_FOUND = "not_found"  # no such job (or pruned after its retention)
    FINISHED = "finished"  # the job had completed, died or been cancelled already: nothing changed


#: Dispatch tasks cancelled on a user's cancel request (Python 3.10 has no ``Task.uncancel`` bookkeeping
#: to rely on, so the mark is kept here, beside :func:`lssm_jobs.consumer.cancel_for_stop`'s).
_interrupted_tasks: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()


def interrupted_for_cancel(task: asyncio.Future[Any] | None) -> bool:
    """Whether a cancel request cancelled ``task`` (a dispatch task running an async handler)."""
    return task is not None and task in _interrupted_tasks


def check_progress(fraction: Any, message: Any, data: Mapping[str, Any], now: float) -> JobProgress:
    """A progress report, checked.

    :raises TypeError: ``fraction`` not a number, ``message`` not a string, data not JSON-encodable.
    :raises ValueError: ``fraction`` outside 0..1 (or NaN), a message or data too large.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"progress fraction must be a number from 0 to 1, got {type(fraction).__name__}")
    if not (0.0 <= fraction <= 1.0):  # also refuses NaN
        raise ValueError(f"progress fraction must be from 0 to 1, got {fraction!r}")
    if message is not None:
        if not isinstance(message, str):
            raise TypeError(f"progress message must be a string, got {type(message).__name__}")
        if len(message) > MAX_PROGRESS_MESSAGE:
            raise ValueError(
                f"progress message is {len(message)} characters; at most {MAX_PROGRESS_MESSAGE} are kept"
            )
    if data:
        try:
            encoded = json.dumps(dict(data), allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            raise TypeError(f"progress data must be JSON-encodable: {error}") from None
        if len(encoded.encode("utf-8")) > MAX_PROGRESS_DATA_BYTES:
            raise ValueError(f"progress data takes more than {MAX_PROGRESS_DATA_BYTES} bytes as JSON")
    return JobProgress(fraction=float(fraction), message=message, data=dict(data), updated_at=now)


def encode_progress(progress: JobProgress) -> str:
    """The JSON text a backend stores for ``progress``."""
    document: dict[str, Any] = {"fraction": progress.fraction, "at": progress.updated_at}
    if progress.message is not None:
        document["message"] = progress.message
    if progress.data:
        document["data"] = dict(progress.data)
    return json.dumps(document, separators=(",", ":"))


def decode_progress(text: str | bytes | None) -> JobProgress | None:
    """The progress a backend stored, or None (none stored, or not readable: progress is informative, so
    an unreadable value is shown as none rather than failing ``queue.get``)."""
    if text is None:
        return None
    try:
        document = json.loads(text)
        fraction = float(document["fraction"])
        message = document.get("message")
        data = document.get("data") or {}
        if not isinstance(data, dict) or (message is not None and not isinstance(message, str)):
            return None
        return JobProgress(
            fraction=fraction, message=message, data=data, updated_at=float(document.get("at", 0.0))
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class JobControl:
    """One running job's link to its worker: its cancel request and its progress reports."""

    # Made for every job a worker runs: the constructor sets four attributes, the rest start as these
    # class-level defaults until a job needs them (most jobs never report progress or get cancelled).
    #: True while the dispatcher awaits the handler (only then does a request cancel the task).
    in_handler = False
    #: Set by a cancel request. A plain bool: handler threads only read it (atomic under the GIL).
    _cancel_requested = False
    interrupted = False  # the request cancelled the dispatch task
    # progress: the last write's time (monotonic), the report waiting for the interval to end, the timer
    # that writes it, and the write under way (one at a time, in order)
    _last_write = -math.inf
    _waiting: JobProgress | None = None
    _flush: asyncio.TimerHandle | None = None
    _writing: asyncio.Future[None] | None = None

    def __init__(
        self, registry: RunningJobs, job: Job[Any], task: asyncio.Task[Any] | None, is_async: bool
    ) -> None:
        self._registry = registry
        self.job = job
        self.task = task
        self.is_async = is_async

    @property
    def cancelled(self) -> bool:
        return self._cancel_requested

    def request_cancel(self) -> None:
        """A cancel request arrived (call on the event loop): set the flag, and interrupt an async handler
        at its next await."""
        if self._cancel_requested:
            return
        self._cancel_requested = True
        log.info("job %s (%s): cancel requested", self.job.id, self.job.type)
        task = self.task
        if self.is_async and self.in_handler and task is not None and not task.done():
            self.interrupted = True
            _interrupted_tasks.add(task)
            task.cancel()

    def absorb_interrupt(self) -> None:
        """The dispatcher caught the CancelledError this request caused: take the task's cancellation back
        (Python 3.11+ counts them), so settling afterwards runs like any other."""
        task = self.task
        if self.interrupted and task is not None and sys.version_info >= (3, 11):
            task.uncancel()  # type: ignore[attr-defined,unused-ignore]
        self.interrupted = False

    # -- progress ------------------------------------------------------------------------------------------

    async def report(self, fraction: Any, message: Any, data: Mapping[str, Any]) -> None:
        self._accept(self._checked(fraction, message, data))
        if self._writing is not None:
            await asyncio.shield(self._writing)  # the caller sees its own report written when one was due

    def report_from_thread(self, fraction: Any, message: Any, data: Mapping[str, Any]) -> None:
        progress = self._checked(fraction, message, data)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._registry.loop
        if running is loop:
            raise LssmJobsError(
                "job.progress_sync was called on the event loop: use 'await job.progress(...)'"
            )
        loop.call_soon_threadsafe(self._accept, progress)

    def _checked(self, fraction: Any, message: Any, data: Mapping[str, Any]) -> JobProgress:
        if not self._registry.can_progress:
            raise UnsupportedOptionError(
                f"backend {self._registry.backend_name!r} cannot store job progress: its capabilities "
                "declare progress=False"
            )
        return check_progress(fraction, message, data, time.time())

    def _accept(self, progress: JobProgress) -> None:
        """Write ``progress`` now when the interval since the last write has passed, else keep it as the
        waiting report (replacing an older one) and write it when the interval ends."""
        self._waiting = progress
        if self._writing is not None or self._flush is not None:
            return  # the running write or the timer picks the waiting report up
        due = self._last_write + self._registry.progress_interval - time.monotonic()
        if due <= 0:
            self._start_write()
        else:
            self._flush = self._registry.loop.call_later(due, self._flush_due)

    def _flush_due(self) -> None:
        self._flush = None
        if self._waiting is not None and self._writing is None:
            self._start_write()

    def _start_write(self) -> None:
        progress, self._waiting = self._waiting, None
        if progress is None:
            return
        self._last_write = time.monotonic()
        self._writing = asyncio.ensure_future(self._write(progress))
        self._writing.add_done_callback(self._written)

    def _written(self, _: asyncio.Future[None]) -> None:
        self._writing = None
        if self._waiting is not None and self._flush is None:
            due = self._last_write + self._registry.progress_interval - time.monotonic()
            self._flush = self._registry.loop.call_later(max(due, 0.0), self._flush_due)

    async def _write(self, progress: JobProgress) -> None:
        job = self.job
        try:
            await self._registry.backend.set_progress(job.id, encode_progress(progress))
        except Exception as error:  # progress is informative: never the job's failure
            log.warning("could not store the progress of job %s: %s", job.id, brief_error(error))
            return
        events = self._registry.events
        if events.wants(JobProgressed.name):
            await events.emit(
                JobProgressed(
                    timestamp=progress.updated_at,
                    job_id=job.id,
                    job_type=job.type,
                    queue=job.queue,
                    attempt=job.attempt,
                    fraction=progress.fraction,
                    message=progress.message,
                    data=dict(progress.data),
                )
            )

    def finish_quietly(self) -> bool:
        """The handler returned: when no cancel request reached the job and no progress report waits or is
        being written (the usual case), forget the job and return True; else return False (then await
        :meth:`finish`). Saves every ordinary job a coroutine."""
        if self._cancel_requested or self._writing is not None or self._waiting is not None:
            return False
        if self._flush is not None:
            self._flush.cancel()
        self._registry.forget(self)
        return True

    async def finish(self) -> None:
        """The handler returned: write the waiting report (before the job settles), then forget the job."""
        try:
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            if self._writing is not None:
                await asyncio.shield(self._writing)
            if self._waiting is not None:
                progress, self._waiting = self._waiting, None
                await self._write(progress)
        finally:
            self._registry.forget(self)


class RunningJobs:
    """The jobs one dispatcher runs, by id, and the poll that brings them cancel requests made elsewhere.

    :param backend: the queue's backend (its capabilities decide what is offered).
    :param cancel_poll_interval: seconds between checks for cancel requests while jobs run.
    :param progress_interval: shortest time between two progress writes of one job.
    """

    def __init__(
        self,
        backend: QueueBackend,
        events: EventBus,
        *,
        cancel_poll_interval: float = DEFAULT_CANCEL_POLL_INTERVAL,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    ) -> None:
        self.backend = backend
        self.backend_name = backend.name or type(backend).__name__
        self.events = events
        self.can_cancel = backend.capabilities.cancel
        self.can_progress = backend.capabilities.progress
        self.cancel_poll_interval = cancel_poll_interval
        self.progress_interval = progress_interval
        self._controls: dict[str, JobControl] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the loop of the first job

    def begin(self, job: Job[Any], *, is_async: bool) -> JobControl:
        """Register ``job`` (about to run in the current task) and give it its control."""
        control = JobControl(self, job, current_task(), is_async)
        set_extra(job, control)
        self._controls[job.id] = control
        watcher = self._watcher
        if watcher is None or watcher.done():
            self.loop = asyncio.get_running_loop()
            if self.can_cancel and not self._closed:
                self._watcher = asyncio.ensure_future(self._watch())
        return control

    def forget(self, control: JobControl) -> None:
        """The job settles: stop tracking it, and unlink it from its control (the two referring to each
        other would leave every job to the cyclic garbage collector instead of freeing it at once)."""
        job = control.job
        if self._controls.get(job.id) is control:
            del self._controls[job.id]
        set_extra(job, None)

    def request(self, job_id: str) -> bool:
        """Pass a cancel request to ``job_id`` if it runs here. :returns: whether it does."""
        control = self._controls.get(job_id)
        if control is None:
            return False
        control.request_cancel()
        return True

    @property
    def ids(self) -> list[str]:
        return list(self._controls)

    async def _watch(self) -> None:
        """While jobs run: every poll interval, ask the backend which of them have a cancel request. Ends
        after an interval in which no job was running at its end (the next job starts it again), so short
        jobs one after another share one poll task instead of starting one each."""
        while not self._closed:
            await asyncio.sleep(self.cancel_poll_interval)
            ids = list(self._controls)
            if not ids:
                return
            try:
                requested = await self.backend.cancel_requested(ids)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("could not check for cancel requests: %s", brief_error(error))
                continue
            for job_id in requested:
                self.request(job_id)

    async def close(self) -> None:
        """Stop the poll (the queue's worker stopped)."""
        self._closed = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
