"""``JobScheduler``: fire callables or enqueue jobs on cron, interval and one-off schedules, exactly once per
tick across every scheduler instance that shares a store, surviving restarts without missing or repeating
a tick.

How a tick fires: the scheduler sleeps until the earliest due tick (or a schedule change wakes it), then for
each due schedule claims the tick in the store (:meth:`SchedulerStore.claim` succeeds for one instance
only) and, if it won, runs the callable or enqueues the job with ``dedupe_key="schedule:<name>:<tick>"``.

Firing is two-phase, so a crash cannot lose a tick: the claim stays unfinished, renewed every third of
``claim_timeout``, until the job was enqueued or the callable returned, and only then is it completed. An
instance that dies in between (SIGKILL, OOM) stops renewing; once its claim is ``claim_timeout`` old, another
instance (or the same one, restarted) takes it over and fires the tick. Jobs are enqueued once per tick even
then (the dedupe key); callables run at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from lssm_jobs.errors import JobValidationError, LssmJobsError
from lssm_jobs.events import EventBus, EventCallback, ScheduleFired, SchedulerTick
from lssm_jobs.jobs import JobType
from lssm_jobs.plugins import PluginRegistry, get_plugins
from lssm_jobs.scheduler.clock import Clock, SystemClock
from lssm_jobs.scheduler.stores import SchedulerStore, TickClaim
from lssm_jobs.scheduler.triggers import InvalidScheduleError, Trigger, resolve_timezone
from lssm_jobs.serialization import validate_payload

if TYPE_CHECKING:
    from lssm_jobs.queue import JobQueue

log = logging.getLogger("lssm_jobs.scheduler")

MisfirePolicy = Literal["skip", "once", "all"]
OverlapPolicy = Literal["skip", "allow"]
MISFIRE_POLICIES: tuple[str, ...] = ("skip", "once", "all")
OVERLAP_POLICIES: tuple[str, ...] = ("skip", "allow")

F = TypeVar("F", bound=Callable[..., Any])

_UNSET: Any = object()
_NAME_LIMIT = 200
_UNFINISHED_SCAN_LIMIT = 500  # unfinished claims read per look for abandoned ones (usually a handful)
_COMPLETE_ATTEMPTS = 3

_current_tick: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "lssm_jobs_tick", default=None
)


def current_tick() -> datetime | None:
    """The tick the running scheduled callable was fired for (in its schedule's time zone), or None outside a
    scheduled run. Handy for idempotency: "process the hour ending at the tick", not "the hour before now"."""
    return _current_tick.get()


class ScheduleNotFoundError(LssmJobsError, LookupError):
    """No schedule has that name (in this scheduler, nor in its store)."""


class ScheduleExistsError(LssmJobsError, ValueError):
    """A schedule with that name is already defined; pass ``replace=True`` to redefine it."""


@attrs.frozen(kw_only=True)
class ScheduleInfo:
    """A schedule as this scheduler instance sees it (``scheduler.list()``).

    :param target: ``"call module.function"`` or ``"job <type>"``.
    :param next_run: the next tick due, in the schedule's time zone (None: paused, or no tick left).
    :param last_tick: the latest tick settled (fired by any instance, or skipped), None before start.
    :param running: runs of the callable in progress in this instance.
    :param fired: ticks this instance fired since it started.
    :param last_error: the last run's error, None after a success (callables and enqueue failures).
    """

    name: str
    kind: str
    trigger: str
    target: str
    paused: bool
    next_run: datetime | None
    last_tick: datetime | None
    misfire: MisfirePolicy
    misfire_grace: float | None
    overlap: OverlapPolicy
    running: int
    fired: int
    last_error: str | None


@attrs.define(kw_only=True, eq=False)
class _Schedule:
    """A schedule's definition and this instance's view of its progress."""

    name: str
    trigger: Trigger
    func: Callable[..., Any] | None
    is_async: bool
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    job_type: str | JobType[Any] | None
    payload: Any
    enqueue_options: dict[str, Any]
    misfire: MisfirePolicy
    misfire_grace: float | None
    overlap: OverlapPolicy
    # progress
    registered: bool = False  # the store has its row and `cursor` came from it
    cursor: float | None = None  # ticks at or before it are settled
    due: float | None = None  # the first tick after cursor
    paused: bool = False
    running: set[asyncio.Task[None]] = attrs.field(factory=set)
    fired: int = 0
    last_error: str | None = None
    run_counter: int = 0

    def advance_to(self, tick: float) -> None:
        if self.cursor is None or tick > self.cursor:
            self.cursor = tick
        self.due = self.trigger.next_fire(self.cursor)

    @property
    def target(self) -> str:
        if self.func is not None:
            return f"call {_callable_name(self.func)}"
        job_type = self.job_type.type if isinstance(self.job_type, JobType) else self.job_type
        return f"job {job_type}"


def _callable_name(func: Callable[..., Any]) -> str:
    target = func.func if isinstance(func, functools.partial) else func
    module = getattr(target, "__module__", None) or "?"
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}"


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004


def tick_key(tick: float) -> str:
    """How a tick is written in dedupe keys and job meta: ISO 8601 UTC, e.g. ``2026-03-29T01:00:00Z``."""
    moment = datetime.fromtimestamp(tick, timezone.utc)
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be >= 0 seconds, got {value!r}")
    return seconds


def _default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobScheduler:
    """Runs schedules: callables in this process, or jobs enqueued on ``queue`` for workers to run.

    :param queue: the :class:`~lssm_jobs.queue.JobQueue` jobs are enqueued on and whose event bus receives
        ``scheduler.tick`` / ``scheduler.fired``; its backend also picks the default store. Without one the
        scheduler runs callables only, on a private in-memory queue.
    :param store: a :class:`SchedulerStore`, a registered store name (``"sqlite"``, ``"memory"``,
        ``"redis"``...), or None for the store registered for the queue's backend. Instances sharing a store
        fire each tick once between them.
    :param clock: where time comes from (:class:`ManualClock` in tests); the system clock by default.
    :param instance_id: names this instance in claims; host:pid:random by default.
    :param tz: default time zone of cron and naive-datetime schedules (IANA name or tzinfo); UTC by default.
    :param misfire: default misfire policy: ``"skip"``, ``"once"`` (default) or ``"all"``.
    :param misfire_grace: default catch-up window (seconds or timedelta) of ``once``/``all``; None: no limit.
    :param misfire_threshold: a tick reached more than this many seconds late counts as missed.
    :param overlap: default overlap policy of callables: ``"skip"`` (default) or ``"allow"``.
    :param max_sleep: longest sleep between checks, so a stepped wall clock or a schedule resumed by another
        instance is noticed within it.
    :param shutdown_timeout: on :meth:`stop`, how long running callables may finish before async ones are
        cancelled (threads cannot be; they are left to finish).
    :param claim_retention: seconds recorded claims are kept; older ones are pruned hourly.
    :param claim_timeout: seconds after which a claimed tick that is still not fired (its instance stopped
        renewing the claim: it died) is taken over and fired by another instance. Instances renew their
        claims every third of it while firing, so a long callable keeps its claim.
    :param enqueue_retries: retries (with backoff) of an enqueue that fails after its tick was claimed; the
        tick's dedupe key makes retrying safe.
    :raises PluginNotFoundError: ``store`` names no registered store, or none is registered for the queue's
        backend (pass ``store=``).
    """

    def __init__(
        self,
        queue: JobQueue | None = None,
        *,
        store: SchedulerStore | str | None = None,
        clock: Clock | None = None,
        instance_id: str | None = None,
        tz: str | tzinfo | None = None,
        misfire: MisfirePolicy = "once",
        misfire_grace: float | timedelta | None = None,
        misfire_threshold: float = 1.0,
        overlap: OverlapPolicy = "skip",
        max_sleep: float = 60.0,
        shutdown_timeout: float = 30.0,
        claim_retention: float = 86_400.0,
        claim_timeout: float = 60.0,
        enqueue_retries: int = 3,
        plugins: PluginRegistry | None = None,
    ) -> None:
        _check_policies(misfire, overlap)
        if max_sleep <= 0:
            raise ValueError("max_sleep must be > 0")
        if not math.isfinite(claim_timeout) or claim_timeout <= 0:
            raise ValueError("claim_timeout must be > 0 seconds")
        if misfire_threshold < 0:
            raise ValueError("misfire_threshold must be >= 0")
        self.plugins = plugins or getattr(queue, "plugins", None) or get_plugins()
        self._owns_queue = queue is None
        if queue is None:
            from lssm_jobs.queue import MemoryJobQueue

            queue = MemoryJobQueue(sinks=(), plugins=self.plugins)
        self.queue: JobQueue = queue
        self.events: EventBus = queue.events
        self.clock: Clock = clock or SystemClock()
        self.instance_id = instance_id or _default_instance_id()
        self.tz = resolve_timezone(tz)
        self.misfire: MisfirePolicy = misfire
        self.misfire_grace = _seconds(misfire_grace, "misfire_grace")
        self.misfire_threshold = float(misfire_threshold)
        self.overlap: OverlapPolicy = overlap
        self.max_sleep = float(max_sleep)
        self.shutdown_timeout = float(shutdown_timeout)
        self.claim_retention = float(claim_retention)
        self.claim_timeout = float(claim_timeout)
        self.enqueue_retries = int(enqueue_retries)
        self.store, self._owns_store = self._resolve_store(store)
        self._schedules: dict[str, _Schedule] = {}
        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._check_lock: asyncio.Lock | None = None
        self._store_open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._runner: asyncio.Task[None] | None = None
        self._last_prune = -math.inf
        # Crash safety: claims this instance is firing right now (schedule, tick), when to look for claims
        # abandoned by dead instances next, and the earliest moment a claim seen in flight elsewhere could
        # go stale (the loop wakes up for it).
        self._in_flight: set[tuple[str, float]] = set()
        self._scan_due = -math.inf
        self._stale_at = math.inf
        self._started_this_check: set[asyncio.Task[None]] = set()

    # -- configuration ----------------------------------------------------------------------------------------

    def _resolve_store(self, store: SchedulerStore | str | None) -> tuple[SchedulerStore, bool]:
        if isinstance(store, SchedulerStore):
            return store, False
        backend = self.queue.backend
        if isinstance(store, str):
            return self.plugins.scheduler_store(store).factory(backend=backend), True
        backend_name = type(backend).name
        for spec in self.plugins.scheduler_stores().values():
            if spec.backend == backend_name:
                return spec.factory(backend=backend), True
        from lssm_jobs.errors import PluginNotFoundError

        available = ", ".join(sorted(self.plugins.scheduler_stores())) or "none"
        raise PluginNotFoundError(
            f"no scheduler store is registered for queue backend {backend_name!r}; pass store= (a "
            f"SchedulerStore or one of: {available})"
        )

    def schedule(
        self,
        name: str,
        when: Any,
        func: Callable[..., Any] | None = None,
        *,
        job: str | JobType[Any] | None = None,
        payload: Any = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        trigger: str | None = None,
        tz: str | tzinfo | None = None,
        trigger_options: Mapping[str, Any] | None = None,
        misfire: MisfirePolicy | None = None,
        misfire_grace: float | timedelta | None = _UNSET,
        overlap: OverlapPolicy | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout_ms: int | None = None,
        replace: bool = False,
    ) -> ScheduleInfo:
        """Define a schedule: call ``func`` each tick, or enqueue ``job`` with ``payload`` each tick.

        :param name: unique name; it identifies the schedule in the store, so keep it stable across deploys.
        :param when: a cron expression (``"*/5 * * * *"``, 6 fields with seconds last, ``"@daily"``), an
            interval (``timedelta``, seconds, ``"every 30s"``), a ``datetime`` (one-off), or a
            :class:`Trigger`.
        :param func: a plain function (run in a worker thread) or an ``async def`` (awaited), called as
            ``func(*args, **kwargs)``.
        :param job: instead of ``func``: a job type (name or :class:`JobType`) enqueued each tick on the
            scheduler's queue with ``dedupe_key="schedule:<name>:<tick>"``, so a tick fired twice still
            enqueues once.
        :param payload: the job's payload, or a function ``payload(tick: datetime)`` building it per tick.
        :param trigger: the trigger kind by name (``"cron"``, ``"interval"``, ``"date"``, or a plugin's),
            when ``when`` alone is ambiguous.
        :param tz: time zone of cron expressions and naive datetimes (default: the scheduler's).
        :param trigger_options: extra keywords for the trigger factory (``start=`` for intervals).
        :param misfire: what to do with ticks missed while no instance was running: ``"skip"`` them,
            run ``"once"`` for all of them, or run ``"all"`` (oldest first).
        :param misfire_grace: ticks older than this (seconds or timedelta) are not caught up by ``once``
            or ``all``; None: no limit.
        :param overlap: for callables, ``"skip"`` a tick while this instance still runs the previous one,
            or ``"allow"`` concurrent runs.
        :param queue: enqueue options for ``job``: target queue, priority, retries, timeout.
        :param replace: redefine an existing schedule of that name instead of raising.
        :returns: the schedule's info.
        :raises InvalidScheduleError: the expression or time zone is invalid (a ``ValueError``; the message
            names the expression).
        :raises ScheduleExistsError: the name is taken and ``replace`` is False.
        :raises JobValidationError: ``payload`` does not fit ``job``'s type.
        :raises ValueError: neither or both of ``func`` and ``job``, or a bad policy.
        """
        if not isinstance(name, str) or not name.strip() or len(name) > _NAME_LIMIT:
            raise ValueError(f"a schedule name is a non-empty string of at most {_NAME_LIMIT} characters")
        if (func is None) == (job is None):
            raise ValueError("schedule() needs either a callable or job=, not both")
        if func is not None and not callable(func):
            raise ValueError(f"schedule {name!r}: {func!r} is not callable")
        if job is not None and self._owns_queue:
            raise ValueError(
                "this scheduler has no queue to enqueue jobs on; create it as JobScheduler(queue)"
            )
        if func is None and (args or kwargs):
            raise ValueError("args/kwargs are for callables; jobs take payload=")
        if func is not None and (
            payload is not None
            or queue
            or priority is not None
            or max_retries is not None
            or timeout_ms is not None
        ):
            raise ValueError("payload and enqueue options are for jobs; callables take args/kwargs")
        misfire = misfire or self.misfire
        overlap = overlap or self.overlap
        _check_policies(misfire, overlap)
        grace = self.misfire_grace if misfire_grace is _UNSET else _seconds(misfire_grace, "misfire_grace")
        if name in self._schedules and not replace:
            raise ScheduleExistsError(f"a schedule named {name!r} already exists (pass replace=True)")
        built = self._trigger(name, when, kind=trigger, tz=tz, options=trigger_options or {})
        if job is not None and payload is not None and not callable(payload):
            definition = job if isinstance(job, JobType) else self.queue.catalog.get(job)
            if definition is not None:
                validate_payload(definition, payload)  # raises JobValidationError now, not at 3 a.m.
        enqueue_options = {
            key: value
            for key, value in (
                ("queue", queue),
                ("priority", priority),
                ("max_retries", max_retries),
                ("timeout_ms", timeout_ms),
            )
            if value is not None
        }
        entry = _Schedule(
            name=name,
            trigger=built,
            func=func,
            is_async=func is not None and _is_async(func),
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            job_type=job,
            payload=payload,
            enqueue_options=enqueue_options,
            misfire=misfire,
            misfire_grace=grace,
            overlap=overlap,
        )
        previous = self._schedules.get(name)
        if previous is not None:  # keep progress and running runs; the new trigger takes over from the cursor
            entry.registered, entry.paused, entry.running = (
                previous.registered,
                previous.paused,
                previous.running,
            )
            entry.fired = previous.fired
            if previous.cursor is not None:
                entry.advance_to(previous.cursor)
        self._schedules[name] = entry
        self._notify()
        return self._info(entry)

    def scheduled(self, name: str, when: Any, **options: Any) -> Callable[[F], F]:
        """Decorator form of :meth:`schedule` for callables::

        @scheduler.scheduled("nightly-report", "0 3 * * *", tz="Europe/Berlin")
        async def nightly_report() -> None: ...
        """

        def register(func: F) -> F:
            self.schedule(name, when, func, **options)
            return func

        return register

    def _trigger(
        self, name: str, when: Any, *, kind: str | None, tz: str | tzinfo | None, options: Mapping[str, Any]
    ) -> Trigger:
        if isinstance(when, Trigger):
            if kind is not None or tz is not None or options:
                raise ValueError("trigger=, tz= and trigger_options= do not apply to a Trigger instance")
            return when
        zone = resolve_timezone(tz, self.tz)
        specs = self.plugins.schedule_triggers()
        if kind is not None:
            spec = self.plugins.schedule_trigger(kind)
        else:
            candidates = [spec for spec in specs.values() if spec.accepts(when)]
            if not candidates:
                kinds = ", ".join(sorted(specs)) or "none are registered"
                raise InvalidScheduleError(
                    when, f"not a cron expression, interval or datetime (trigger kinds: {kinds})"
                )
            spec = candidates[0]
        try:
            built = spec.factory(when, tz=zone, name=name, **options)
        except InvalidScheduleError:
            raise
        except ValueError as error:
            raise InvalidScheduleError(when, str(error)) from error
        if not isinstance(built, Trigger):
            raise LssmJobsError(f"trigger kind {spec.name!r} built {built!r}, not a Trigger")
        return built

    # -- runtime control --------------------------------------------------------------------------------------

    def _get(self, name: str) -> _Schedule:
        entry = self._schedules.get(name)
        if entry is None:
            raise ScheduleNotFoundError(f"no schedule named {name!r}")
        return entry

    def next_run(self, name: str) -> datetime | None:
        """When ``name`` fires next (in its time zone), or None when paused or done.

        :raises ScheduleNotFoundError: no such schedule here.
        """
        entry = self._get(name)
        due = self._due(entry)
        return None if entry.paused or due is None else datetime.fromtimestamp(due, entry.trigger.tz)

    def list(self) -> list[ScheduleInfo]:
        """Every schedule of this scheduler, by name."""
        return [self._info(self._schedules[name]) for name in sorted(self._schedules)]

    def get(self, name: str) -> ScheduleInfo:
        """One schedule's info. :raises ScheduleNotFoundError: no such schedule here."""
        return self._info(self._get(name))

    def __contains__(self, name: object) -> bool:
        return name in self._schedules

    async def pause(self, name: str) -> None:
        """Pause ``name`` for every instance sharing the store (persisted: it stays paused across restarts
        until resumed). Ticks passing while paused are settled, not missed.

        :raises ScheduleNotFoundError: neither this scheduler nor the store knows the name.
        """
        await self._set_paused(name, True)

    async def resume(self, name: str) -> None:
        """Resume ``name`` everywhere; it fires from its next tick on (nothing is caught up).

        :raises ScheduleNotFoundError: neither this scheduler nor the store knows the name.
        """
        await self._set_paused(name, False)

    async def _set_paused(self, name: str, paused: bool) -> None:
        await self._open_store()
        now = self.clock.now()
        entry = self._schedules.get(name)
        if entry is not None:
            await self._register(entry, now)
        state = await self.store.set_paused(name, paused, now=now)
        if state is None and entry is None:
            raise ScheduleNotFoundError(f"no schedule named {name!r}")
        if entry is not None:
            entry.paused = paused
            if not paused:
                entry.advance_to(now if state is None or state.last_tick is None else state.last_tick)
        log.info("schedule %r %s", name, "paused" if paused else "resumed")
        self._notify()

    async def trigger(self, name: str) -> str | None:
        """Fire ``name`` once now, outside its schedule (``lssm-jobs schedules trigger``): enqueue its job
        (no dedupe key: every trigger enqueues) or run its callable here, awaited. Its ticks and stored
        state are left as they are.

        :returns: the enqueued job's id, or None for a callable.
        :raises ScheduleNotFoundError: this scheduler does not define ``name``.
        """
        entry = self._get(name)
        now = self.clock.now()
        moment = datetime.fromtimestamp(now, entry.trigger.tz)
        if entry.func is not None:
            token = _current_tick.set(moment)
            try:
                if entry.is_async:
                    await entry.func(*entry.args, **entry.kwargs)
                else:
                    result = await asyncio.to_thread(entry.func, *entry.args, **entry.kwargs)
                    if inspect.isawaitable(result):
                        await result
            finally:
                _current_tick.reset(token)
            log.info("schedule %r triggered by hand", name)
            return None
        assert entry.job_type is not None
        payload = entry.payload(moment) if callable(entry.payload) else entry.payload
        job = await self.queue.enqueue(
            entry.job_type,
            payload,
            meta={"schedule": name, "schedule_trigger": "manual"},
            **entry.enqueue_options,
        )
        log.info("schedule %r triggered by hand: job %s", name, job.id)
        return job.id

    async def remove(self, name: str) -> bool:
        """Remove ``name`` from this scheduler and forget its stored state and claims (runs in progress
        finish). Other instances that still define it re-create it on their next tick.

        :returns: False when neither this scheduler nor the store knew it.
        """
        entry = self._schedules.pop(name, None)
        await self._open_store()
        deleted = await self.store.delete(name)
        self._notify()
        return entry is not None or deleted

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    async def _open_store(self) -> None:
        if not self._store_open:
            await self.store.open()
            self._store_open = True

    async def start(self) -> None:
        """Open the store, register the schedules, and start firing in the background.

        :raises LssmJobsError: already running.
        :raises ConnectionError: the store cannot be reached.
        """
        if self.running:
            raise LssmJobsError("this scheduler is already running")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop_requested.clear()
        await self.queue.open()
        await self._open_store()
        now = self.clock.now()
        for entry in list(self._schedules.values()):
            await self._register(entry, now)
        self._runner = asyncio.create_task(self._run_loop(), name=f"lssm-jobs scheduler {self.instance_id}")
        log.info(
            "scheduler %s started with %d schedules (store %s)",
            self.instance_id,
            len(self._schedules),
            type(self.store).__name__,
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop promptly: no new ticks; running callables get ``timeout`` (default ``shutdown_timeout``)
        seconds to finish, then async ones are cancelled. Closes the store if the scheduler opened it."""
        runner, self._runner = self._runner, None
        self._stop_requested.set()
        self._wake.set()
        if runner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(runner), 10.0)
            except asyncio.TimeoutError:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
        tasks = {task for entry in self._schedules.values() for task in entry.running}
        if tasks:
            wait = self.shutdown_timeout if timeout is None else timeout
            _, pending = await asyncio.wait(tasks, timeout=wait)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("cancelled %d scheduled runs still going after %.1fs", len(pending), wait)
                await asyncio.gather(*pending, return_exceptions=True)
        if self._owns_store and self._store_open:
            self._store_open = False
            await self.store.close()
        self._stop_requested.clear()  # stopped: run_due() and start() work again
        self._scan_due, self._stale_at = -math.inf, math.inf  # a restart looks for abandoned claims first
        if runner is not None:
            log.info("scheduler %s stopped", self.instance_id)

    async def run(self, stopping: asyncio.Event) -> None:
        """Run until ``stopping`` is set, then stop (what ``lssm-jobs scheduler`` runs)."""
        await self.start()
        try:
            runner = self._runner
            assert runner is not None
            stop_task = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({stop_task, runner}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
        finally:
            await self.stop()

    async def __aenter__(self) -> JobScheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def on(self, event: str, callback: EventCallback) -> Callable[[], None]:
        """Subscribe to events on the queue's bus (``"scheduler.tick"``, ``"scheduler.fired"``, ...)."""
        return self.events.on(event, callback)

    def _notify(self) -> None:
        """Wake the loop to recompute its next wake-up (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    # -- the loop ---------------------------------------------------------------------------------------------

    async def _run_loop(self) -> None:
        failures = 0
        while not self._stop_requested.is_set():
            self._wake.clear()
            try:
                fired, checked_at = await self._check()
                failures = 0
                next_wakeup = self._next_wakeup()
            except Exception:
                failures += 1
                log.exception("scheduler check failed (attempt %d); retrying", failures)
                checked_at = self.clock.now()
                fired, next_wakeup = 0, checked_at + min(30.0, 0.5 * 2 ** min(failures, 6))
            if self.events.wants(SchedulerTick.name):
                await self.events.emit(
                    SchedulerTick(timestamp=checked_at, due=fired, next_wakeup=next_wakeup)
                )
            if self._stop_requested.is_set():
                break
            now = self.clock.now()
            deadline = now + self.max_sleep if next_wakeup is None else min(next_wakeup, now + self.max_sleep)
            await self.clock.sleep_until(deadline, self._wake)

    def _next_wakeup(self) -> float | None:
        if any(not entry.registered for entry in self._schedules.values()):
            return self.clock.now()
        dues = [entry.due for entry in self._schedules.values() if entry.due is not None]
        if self._stale_at < math.inf:
            dues.append(self._stale_at)
        return min(dues) if dues else None

    async def run_due(self) -> int:
        """Fire every tick that is due now (what the background loop does each time it wakes).

        Call it yourself to drive a scheduler without :meth:`start`, e.g. from a platform cron hitting an
        endpoint every minute. :returns: how many ticks this instance fired.
        """
        fired, _ = await self._check()
        return fired

    async def _check(self) -> tuple[int, float]:
        """One pass over the schedules. :returns: ticks fired, and the time the pass judged "now" by."""
        if self._check_lock is None:
            self._check_lock = asyncio.Lock()
        async with self._check_lock:
            await self._open_store()
            now = self.clock.now()
            fired = 0
            self._started_this_check = set()
            if now >= min(self._scan_due, self._stale_at) and not self._stop_requested.is_set():
                fired += await self._take_over_abandoned(now)
            for entry in list(self._schedules.values()):
                if self._stop_requested.is_set():
                    break
                if self._schedules.get(entry.name) is not entry:
                    continue  # removed or replaced meanwhile
                if not entry.registered:
                    await self._register(entry, now)
                fired += await self._process(entry, now)
            if now - self._last_prune >= 3600.0:
                self._last_prune = now
                pruned = await self.store.prune_claims(before=now - self.claim_retention)
                if pruned:
                    log.debug("pruned %d schedule claims older than %.0fs", pruned, self.claim_retention)
            return fired, now

    async def _register(self, entry: _Schedule, now: float) -> None:
        if entry.registered:
            return
        state = await self.store.ensure(entry.name, now=now)
        entry.paused = state.paused
        entry.advance_to(now if state.last_tick is None else state.last_tick)
        entry.registered = True

    def _due(self, entry: _Schedule) -> float | None:
        if entry.cursor is None:  # not registered yet: what it would do from now
            return entry.trigger.next_fire(self.clock.now())
        return entry.due

    async def _refresh(self, entry: _Schedule) -> bool:
        """Re-read the stored state after a lost claim: another instance may be ahead, or paused it.

        :returns: whether the schedule is paused.
        """
        state = await self.store.get(entry.name)
        if state is None:  # removed elsewhere; this instance still defines it, so it is re-created
            entry.registered = False
            return entry.paused
        entry.paused = state.paused
        if state.last_tick is not None:
            entry.advance_to(state.last_tick)
        return entry.paused

    async def _process(self, entry: _Schedule, now: float) -> int:
        """Handle the ticks of ``entry`` due at ``now`` by its misfire policy. :returns: ticks fired."""
        first = entry.due
        if first is None or first > now or entry.cursor is None:
            return 0
        if entry.paused:
            paused = await self._refresh(entry)  # resumed by another instance?
            if paused or not entry.registered:
                passed = entry.trigger.latest_fire(entry.cursor, now)
                entry.advance_to(entry.cursor if passed is None else passed)
                return 0
            first = entry.due
            if first is None or first > now:
                return 0
        cursor = entry.cursor
        if entry.func is not None and entry.overlap == "skip" and entry.running - self._started_this_check:
            # Runs started by an earlier check are still going: this check's ticks are skipped. (Ticks fired
            # within one check, e.g. a catch-up, run one after another instead; see _start_run.)
            latest = entry.trigger.latest_fire(cursor, now)
            if latest is not None:
                await self._settle(
                    entry, latest, now, reason="the previous run is still going (overlap skip)"
                )
            return 0
        if now - first <= self.misfire_threshold:
            return await self._fire_through(entry, now)
        if entry.misfire == "skip":  # missed: more than the threshold late
            last_missed = entry.trigger.latest_fire(
                cursor, math.nextafter(now - self.misfire_threshold, -math.inf)
            )
            if last_missed is not None:
                await self._settle(entry, last_missed, now, reason="missed (misfire policy skip)")
            return await self._fire_through(entry, now)
        grace = entry.misfire_grace
        if entry.misfire == "once":
            latest = entry.trigger.latest_fire(cursor, now)
            if latest is None:
                return 0
            if grace is not None and now - latest > grace:
                await self._settle(entry, latest, now, reason=f"missed by more than the {grace:.0f}s grace")
                return 0
            if latest != first:
                log.warning(
                    "schedule %r: ticks from %s to %s were missed; running once for %s (misfire policy once)",
                    entry.name,
                    tick_key(first),
                    tick_key(latest),
                    tick_key(latest),
                )
            return await self._fire(entry, latest, now)
        # "all": every missed tick within the grace window, oldest first
        if grace is not None:
            horizon = math.nextafter(now - grace, -math.inf)
            too_old = entry.trigger.latest_fire(cursor, horizon)
            if too_old is not None:
                await self._settle(entry, too_old, now, reason=f"missed by more than the {grace:.0f}s grace")
        return await self._fire_through(entry, now)

    async def _fire_through(self, entry: _Schedule, now: float) -> int:
        fired = 0
        while entry.due is not None and entry.due <= now and entry.registered and not entry.paused:
            if self._stop_requested.is_set():
                break
            fired += await self._fire(entry, entry.due, now)
        return fired

    async def _settle(self, entry: _Schedule, tick: float, now: float, *, reason: str) -> None:
        previous = entry.cursor
        entry.advance_to(tick)
        await self.store.advance(entry.name, tick, now=now, next_tick=entry.due)
        log.warning(
            "schedule %r: ticks after %s up to %s not run: %s",
            entry.name,
            tick_key(previous) if previous is not None else "?",
            tick_key(tick),
            reason,
        )

    async def _fire(self, entry: _Schedule, tick: float, now: float) -> int:
        next_tick = entry.trigger.next_fire(tick)
        won = await self.store.claim(entry.name, tick, owner=self.instance_id, now=now, next_tick=next_tick)
        entry.advance_to(tick)
        if not won:
            # Another instance holds the tick (or it was settled). Should that instance die before it fires
            # the tick, its claim goes stale one claim timeout from now: look again then.
            self._stale_at = min(self._stale_at, now + self.claim_timeout)
            await self._refresh(entry)
            return 0
        return await self._fire_claimed(entry, tick)

    async def _fire_claimed(self, entry: _Schedule, tick: float) -> int:
        """Fire a tick this instance holds the claim of; the claim is completed once it has fired."""
        entry.fired += 1
        job_id = None
        if entry.func is not None:
            self._start_run(entry, tick)
        else:
            job_id = await self._enqueue_claimed(entry, tick)
        await self.events.emit(
            ScheduleFired(timestamp=self.clock.now(), schedule=entry.name, tick=tick, job_id=job_id)
        )
        return 1

    # -- crash safety: renewing, completing and taking over claims -------------------------------------------

    async def _take_over_abandoned(self, now: float) -> int:
        """Fire the ticks whose claims their instances stopped renewing (they died while firing them).

        :returns: ticks fired.
        """
        claims = await self.store.unfinished_claims(limit=_UNFINISHED_SCAN_LIMIT)
        self._scan_due = now + self.claim_timeout / 2
        self._stale_at = math.inf
        stale_before = now - self.claim_timeout
        fired = 0
        for claim in claims:
            if self._stop_requested.is_set():
                break
            entry = self._schedules.get(claim.schedule)
            if entry is None or (claim.schedule, claim.tick) in self._in_flight:
                continue  # a schedule this instance does not define, or a tick it is firing right now
            if claim.claimed_at > stale_before:  # alive (renewed lately): wake up when it would go stale
                stale_at = max(claim.claimed_at + self.claim_timeout, math.nextafter(now, math.inf))
                self._stale_at = min(self._stale_at, stale_at)
                continue
            won = await self.store.take_over(
                claim.schedule, claim.tick, owner=self.instance_id, now=now, stale_before=stale_before
            )
            entry = self._schedules.get(claim.schedule)  # the current definition, should it have changed
            if won and entry is not None:
                fired += await self._fire_taken_over(entry, claim, now)
        return fired

    async def _fire_taken_over(self, entry: _Schedule, claim: TickClaim, now: float) -> int:
        tick = claim.tick
        grace = entry.misfire_grace
        if grace is not None and now - tick > grace:
            log.warning(
                "schedule %r: tick %s was claimed by %s, which never finished firing it; not fired now: it is "
                "more than the %.0fs misfire grace old",
                entry.name,
                tick_key(tick),
                claim.claimed_by,
                grace,
            )
            await self._complete(entry.name, tick)
            return 0
        log.warning(
            "schedule %r: tick %s was claimed by %s, which did not finish firing it within the %.0fs claim "
            "timeout (it died?); firing it here (attempt %d)",
            entry.name,
            tick_key(tick),
            claim.claimed_by,
            self.claim_timeout,
            claim.attempts + 1,
        )
        return await self._fire_claimed(entry, tick)

    @contextlib.asynccontextmanager
    async def _renewing(self, name: str, tick: float) -> AsyncIterator[None]:
        """Renew this instance's claim on ``tick`` every third of the claim timeout while the body runs."""
        renewer = asyncio.create_task(
            self._renew(name, tick), name=f"lssm-jobs claim {name} {tick_key(tick)}"
        )
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def _renew(self, name: str, tick: float) -> None:
        never = asyncio.Event()
        while True:
            deadline = self.clock.now() + self.claim_timeout / 3
            while self.clock.now() < deadline:
                await self.clock.sleep_until(deadline, never)
            try:
                held = await self.store.renew(name, tick, owner=self.instance_id, now=self.clock.now())
            except Exception as error:
                # still ours unless this goes on for the rest of the claim timeout
                log.warning(
                    "schedule %r: renewing the claim on tick %s failed (%s: %s); retrying",
                    name,
                    tick_key(tick),
                    type(error).__name__,
                    error,
                )
                continue
            if not held:
                if name in self._schedules:
                    log.warning(
                        "schedule %r: another instance took over the claim on tick %s (this one did not renew "
                        "it within the %.0fs claim timeout); the tick may fire twice",
                        name,
                        tick_key(tick),
                        self.claim_timeout,
                    )
                return

    async def _complete(self, name: str, tick: float) -> None:
        """Mark the claim finished: the tick has fired (or was deliberately not fired)."""
        for attempt in range(_COMPLETE_ATTEMPTS):
            try:
                held = await self.store.complete(name, tick, owner=self.instance_id, now=self.clock.now())
            except Exception as error:
                if attempt + 1 == _COMPLETE_ATTEMPTS:
                    log.error(
                        "schedule %r: tick %s fired but could not be marked done (%s: %s); another instance "
                        "fires it again after the %.0fs claim timeout",
                        name,
                        tick_key(tick),
                        type(error).__name__,
                        error,
                        self.claim_timeout,
                    )
                    return
                await asyncio.sleep(0.1 * 2**attempt)
                continue
            if not held and name in self._schedules:
                log.warning(
                    "schedule %r: tick %s was taken over by another instance before this one finished it; "
                    "it may have fired twice",
                    name,
                    tick_key(tick),
                )
            return

    # -- firing -----------------------------------------------------------------------------------------------

    def _start_run(self, entry: _Schedule, tick: float) -> None:
        # With overlap "skip", runs fired by one check (a catch-up of missed ticks) go one after another.
        after = None
        if entry.overlap == "skip" and entry.running:
            after = max(entry.running, key=lambda task: task.get_name())
        entry.run_counter += 1
        key = (entry.name, tick)
        self._in_flight.add(key)
        task = asyncio.create_task(
            self._call(entry, tick, after=after),
            name=f"lssm-jobs schedule {entry.name} #{entry.run_counter:09d}",
        )
        entry.running.add(task)
        self._started_this_check.add(task)
        task.add_done_callback(entry.running.discard)
        task.add_done_callback(lambda _: self._in_flight.discard(key))

    async def _call(self, entry: _Schedule, tick: float, *, after: asyncio.Task[None] | None = None) -> None:
        assert entry.func is not None
        async with self._renewing(entry.name, tick):
            if after is not None:
                await asyncio.wait({after})
            _current_tick.set(datetime.fromtimestamp(tick, entry.trigger.tz))  # this task's own context
            try:
                if entry.is_async:
                    await entry.func(*entry.args, **entry.kwargs)
                else:
                    result = await asyncio.to_thread(entry.func, *entry.args, **entry.kwargs)
                    if inspect.isawaitable(result):
                        await result
                entry.last_error = None
            except asyncio.CancelledError:
                entry.last_error = "cancelled at shutdown"
                log.warning(
                    "schedule %r: the run for tick %s was cancelled at shutdown; it is not marked done, so "
                    "it runs again after the %.0fs claim timeout",
                    entry.name,
                    tick_key(tick),
                    self.claim_timeout,
                )
                raise
            except Exception as error:
                entry.last_error = f"{type(error).__name__}: {error}"
                log.exception("schedule %r failed on tick %s", entry.name, tick_key(tick))
        # at-least-once: a failed run is done too (callables have no retries); only a crash re-runs it
        await self._complete(entry.name, tick)

    async def _enqueue_claimed(self, entry: _Schedule, tick: float) -> str | None:
        key = (entry.name, tick)
        self._in_flight.add(key)
        try:
            async with self._renewing(entry.name, tick):
                job_id, settled = await self._enqueue(entry, tick)
            if settled:
                await self._complete(entry.name, tick)
            return job_id
        finally:
            self._in_flight.discard(key)

    async def _enqueue(self, entry: _Schedule, tick: float) -> tuple[str | None, bool]:
        """Enqueue the tick's job. :returns: the job's id (None when not enqueued), and whether the tick is
        settled: enqueued, or failed for good (a bad payload). Not settled after the queue failed every
        retry: the claim is left unfinished, so the tick is enqueued again once it goes stale."""
        assert entry.job_type is not None
        key = tick_key(tick)
        payload = entry.payload
        try:
            if callable(payload):
                payload = payload(datetime.fromtimestamp(tick, entry.trigger.tz))
        except Exception as error:
            entry.last_error = f"payload function failed: {type(error).__name__}: {error}"
            log.exception("schedule %r: building the payload for tick %s failed", entry.name, key)
            return None, True
        for attempt in range(self.enqueue_retries + 1):
            try:
                job = await self.queue.enqueue(
                    entry.job_type,
                    payload,
                    dedupe_key=f"schedule:{entry.name}:{key}",
                    meta={"schedule": entry.name, "schedule_tick": key},
                    **entry.enqueue_options,
                )
                entry.last_error = None
                return job.id, True
            except JobValidationError as error:
                entry.last_error = str(error)
                log.error("schedule %r: tick %s not enqueued: %s", entry.name, key, error)
                return None, True
            except Exception as error:
                entry.last_error = f"enqueue failed: {type(error).__name__}: {error}"
                if attempt == self.enqueue_retries:
                    log.error(
                        "schedule %r: tick %s claimed but not enqueued after %d attempts (%s); enqueued "
                        "again after the %.0fs claim timeout",
                        entry.name,
                        key,
                        attempt + 1,
                        entry.last_error,
                        self.claim_timeout,
                    )
                    return None, False
                log.warning("schedule %r: enqueue of tick %s failed (%s); retrying", entry.name, key, error)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), 0.5 * 2**attempt)
        return None, False

    def _info(self, entry: _Schedule) -> ScheduleInfo:
        due = self._due(entry)
        tz = entry.trigger.tz
        return ScheduleInfo(
            name=entry.name,
            kind=entry.trigger.kind or type(entry.trigger).__name__,
            trigger=entry.trigger.describe(),
            target=entry.target,
            paused=entry.paused,
            next_run=None if entry.paused or due is None else datetime.fromtimestamp(due, tz),
            last_tick=None if entry.cursor is None else datetime.fromtimestamp(entry.cursor, tz),
            misfire=entry.misfire,
            misfire_grace=entry.misfire_grace,
            overlap=entry.overlap,
            running=len(entry.running),
            fired=entry.fired,
            last_error=entry.last_error,
        )


def _check_policies(misfire: str, overlap: str) -> None:
    if misfire not in MISFIRE_POLICIES:
        raise ValueError(f"misfire must be one of {', '.join(MISFIRE_POLICIES)}, got {misfire!r}")
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {overlap!r}")
