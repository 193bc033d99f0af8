"""Lifecycle events: frozen records, the bus that delivers them to ``queue.on`` callbacks and event sinks,
and the built-in logging sink.

A callback or sink that raises is logged and skipped: observing jobs must never break running them.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import attrs

log = logging.getLogger("lssm_jobs.events")

JOB_ENQUEUED = "job.enqueued"
JOB_STARTED = "job.started"
JOB_COMPLETED = "job.completed"
JOB_FAILED = "job.failed"
JOB_RETRYING = "job.retrying"
JOB_DEAD_LETTERED = "job.dead_lettered"
JOB_TIMED_OUT = "job.timed_out"
JOB_REPLAYED = "job.replayed"
JOB_CANCELLED = "job.cancelled"
JOB_CANCEL_IGNORED = "job.cancel_ignored"
JOB_PROGRESS = "job.progress"
SCHEDULER_TICK = "scheduler.tick"
SCHEDULE_FIRED = "scheduler.fired"
ANY_EVENT = "*"


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event. ``name`` is the event's exact name, e.g. ``"job.completed"``."""

    name: ClassVar[str] = ""
    timestamp: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data for sinks that publish events elsewhere (JSON-ready)."""
        return {"event": self.name, **attrs.asdict(self)}


@attrs.frozen(kw_only=True)
class JobEvent(Event):
    """An event about one job. ``attempt`` is 1-based (the run it concerns); 0 for ``job.enqueued``."""

    job_id: str
    job_type: str
    queue: str
    attempt: int


@attrs.frozen(kw_only=True)
class JobEnqueued(JobEvent):
    name: ClassVar[str] = JOB_ENQUEUED
    run_at: float
    priority: int = 0
    deduplicated: bool = False  # True when a live job with the same dedupe_key was returned instead


@attrs.frozen(kw_only=True)
class JobStarted(JobEvent):
    name: ClassVar[str] = JOB_STARTED
    wait_ms: float  # from run_at (or enqueue) to start: the queueing latency


@attrs.frozen(kw_only=True)
class JobCompleted(JobEvent):
    name: ClassVar[str] = JOB_COMPLETED
    duration_ms: float


@attrs.frozen(kw_only=True)
class JobRetrying(JobEvent):
    name: ClassVar[str] = JOB_RETRYING
    error: str
    delay_ms: int
    retry_at: float
    duration_ms: float


@attrs.frozen(kw_only=True)
class JobFailed(JobEvent):
    """Fired once, when a job has failed for good (retries exhausted or a permanent error)."""

    name: ClassVar[str] = JOB_FAILED
    error: str
    traceback: str | None
    duration_ms: float


@attrs.frozen(kw_only=True)
class JobDeadLettered(JobEvent):
    """A job entered the dead letter queue: after ``job.failed``, or directly when it could not run at all
    (undecodable envelope, unknown type, invalid payload)."""

    name: ClassVar[str] = JOB_DEAD_LETTERED
    reason: str
    error: str | None = None


@attrs.frozen(kw_only=True)
class JobTimedOut(JobEvent):
    name: ClassVar[str] = JOB_TIMED_OUT
    timeout_ms: int


@attrs.frozen(kw_only=True)
class JobReplayed(JobEvent):
    name: ClassVar[str] = JOB_REPLAYED


@attrs.frozen(kw_only=True)
class JobCancelled(JobEvent):
    """The job was cancelled (``queue.cancel``): removed before it ran (``running`` False, ``attempt`` 0),
    or stopped while running (``running`` True: its handler was interrupted or stopped on the request)."""

    name: ClassVar[str] = JOB_CANCELLED
    running: bool
    duration_ms: float | None = None  # how long the handler ran, for a running job


@attrs.frozen(kw_only=True)
class JobCancelIgnored(JobEvent):
    """A cancel request reached the running job but its handler finished anyway (it caught the
    ``CancelledError``, or a sync handler never checked ``job.cancelled``): the job settled as it ended."""

    name: ClassVar[str] = JOB_CANCEL_IGNORED
    outcome: str  # how it settled: "completed" (a failure after a request settles it cancelled)


@attrs.frozen(kw_only=True)
class JobProgressed(JobEvent):
    """A running job's progress, as stored (rate-limited: at most one per job per progress interval, the
    last report always kept)."""

    name: ClassVar[str] = JOB_PROGRESS
    fraction: float
    message: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class SchedulerTick(Event):
    """The scheduler checked for due schedules."""

    name: ClassVar[str] = SCHEDULER_TICK
    due: int  # how many schedules fired on this tick
    next_wakeup: float | None  # when it will check next (epoch seconds), None if nothing is scheduled


@attrs.frozen(kw_only=True)
class ScheduleFired(Event):
    """One schedule fired one tick (exactly once across all scheduler instances sharing a store)."""

    name: ClassVar[str] = SCHEDULE_FIRED
    schedule: str
    tick: float  # the scheduled time of the tick, epoch seconds
    job_id: str | None = None  # set when the schedule enqueues a job


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        JobEnqueued,
        JobStarted,
        JobCompleted,
        JobRetrying,
        JobFailed,
        JobDeadLettered,
        JobTimedOut,
        JobReplayed,
        JobCancelled,
        JobCancelIgnored,
        JobProgressed,
        SchedulerTick,
        ScheduleFired,
    )
}

EventCallback = Callable[[Event], "Awaitable[None] | None"]


class EventSink(ABC):
    """Receives every lifecycle event. Plugins provide sinks through ``lssm_jobs_event_sinks``."""

    @abstractmethod
    async def handle(self, event: Event) -> None:
        """Deliver one event. Exceptions are logged by the bus and never reach the job."""

    def accepts(self, name: str) -> bool:
        """Whether this sink wants events named ``name`` now; False lets hot paths skip building them.
        Asked on every event, so keep it cheap."""
        return True

    async def close(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Flush and release resources; called when the queue closes."""


class LoggingEventSink(EventSink):
    """Logs lifecycle events through :mod:`logging` (logger ``lssm_jobs.events``).

    Payloads are never logged, since they may hold personal data or secrets; ids, types and errors are.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    _LEVELS: ClassVar[dict[str, int]] = {
        JOB_FAILED: logging.WARNING,
        JOB_DEAD_LETTERED: logging.WARNING,
        JOB_RETRYING: logging.INFO,
        JOB_TIMED_OUT: logging.INFO,
        JOB_CANCELLED: logging.INFO,
        JOB_CANCEL_IGNORED: logging.WARNING,
    }

    def accepts(self, name: str) -> bool:
        return self.logger.isEnabledFor(self._LEVELS.get(name, logging.DEBUG))

    async def handle(self, event: Event) -> None:
        level = self._LEVELS.get(event.name, logging.DEBUG)
        if not self.logger.isEnabledFor(level):
            return
        fields = {k: v for k, v in attrs.asdict(event).items() if k not in ("timestamp", "traceback")}
        details = " ".join(f"{key}={value}" for key, value in fields.items())
        # The fields travel with the record too, for structured (JSON) log formats.
        extra = {"lssm_jobs": {"event": event.name, **fields}}
        self.logger.log(level, "%s %s", event.name, details, extra=extra)


class EventBus:
    """Delivers events to subscribed callbacks (by name, or ``"*"`` for all) and to sinks."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[EventCallback]] = {}
        self._sinks: list[EventSink] = []

    def on(self, name: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for each event named ``name`` (or every event for ``"*"``).

        :returns: a function that unsubscribes the callback.
        :raises ValueError: ``name`` is not a known event name or ``"*"``.
        """
        if name != ANY_EVENT and name not in EVENT_TYPES:
            known = ", ".join(sorted(EVENT_TYPES))
            raise ValueError(f"unknown event {name!r}; known events: {known}, or '*' for all")
        self._callbacks.setdefault(name, []).append(callback)

        def unsubscribe() -> None:
            callbacks = self._callbacks.get(name, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    @property
    def sinks(self) -> list[EventSink]:
        return list(self._sinks)

    def wants(self, name: str) -> bool:
        """Whether anyone listens for ``name``; lets hot paths skip building events nobody reads."""
        if self._callbacks.get(name) or self._callbacks.get(ANY_EVENT):
            return True
        return any(sink.accepts(name) for sink in self._sinks)

    async def emit(self, event: Event) -> None:
        for callback in (*self._callbacks.get(event.name, ()), *self._callbacks.get(ANY_EVENT, ())):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event callback %r failed on %s", callback, event.name)
        for sink in self._sinks:
            try:
                if sink.accepts(event.name):
                    await sink.handle(event)
            except Exception:
                log.exception("event sink %s failed on %s", type(sink).__name__, event.name)

    async def close(self) -> None:
        for sink in self._sinks:
            try:
                await sink.close()
            except Exception:
                log.exception("event sink %s failed to close", type(sink).__name__)
