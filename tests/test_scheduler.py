"""JobScheduler with a controllable clock: callables and jobs, misfire policies after an outage, restarts
without repeats or misses, pause/resume/remove, overlap, events, prompt stop, several instances."""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
import threading
import time
import types
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from lssm_jobs import JobCatalog, JobValidationError, define_job_type
from lssm_jobs.backends.memory import MemoryStore
from lssm_jobs.events import Event, ScheduleFired, SchedulerTick
from lssm_jobs.jobs import Job, JobStatus
from lssm_jobs.queue import JobQueue, MemoryJobQueue, open_queue
from lssm_jobs.scheduler import (
    JobScheduler,
    ManualClock,
    MemorySchedulerStore,
    ScheduleExistsError,
    ScheduleNotFoundError,
    SchedulerStore,
    SqliteSchedulerStore,
    resolve_scheduler,
    run_scheduler,
    tick_key,
)
from lssm_jobs.scheduler.memory_store import MemorySchedulerData
from lssm_jobs.testing.helpers import run_async, wait_until

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
T0 = datetime(2026, 5, 5, 10, 0, tzinfo=UTC).timestamp()  # a round minute


class Harness:
    """A scheduler on a manual clock, with what it fired and a way to wait for its next check."""

    def __init__(self, scheduler: JobScheduler, clock: ManualClock) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.checked = -math.inf
        self.checks: list[SchedulerTick] = []
        self.fired: list[ScheduleFired] = []
        scheduler.on("scheduler.tick", self._on_tick)
        scheduler.on("scheduler.fired", self._on_fired)

    def _on_tick(self, event: Event) -> None:
        assert isinstance(event, SchedulerTick)
        self.checks.append(event)
        self.checked = max(self.checked, event.timestamp)

    def _on_fired(self, event: Event) -> None:
        assert isinstance(event, ScheduleFired)
        self.fired.append(event)

    async def settle(self) -> None:
        """Wait until the scheduler has checked at the clock's current time."""
        await wait_until(lambda: self.checked >= self.clock.now(), message="a scheduler check")

    async def quiet(self) -> None:
        """Wait until the callables the scheduler started have returned. The manual clock jumps, so a no-op
        run may still be going (in its thread, on a loaded machine) when the next tick comes due, and the
        default overlap policy would then skip that tick."""
        await wait_until(
            lambda: not any(entry.running for entry in self.scheduler._schedules.values()),
            message="the scheduled runs to finish",
        )

    async def advance(self, seconds: float, *, step: float | None = None, quiet: bool = True) -> None:
        """Move the clock (in steps of ``step``: a running scheduler sees every step), settling each time;
        with ``quiet``, runs started before a step have finished before the clock moves."""
        step = step or seconds
        remaining = seconds
        while remaining > 1e-9:
            move = min(step, remaining)
            if quiet:
                await self.quiet()
            self.clock.advance(move)
            remaining -= move
            await self.settle()

    def ticks(self, name: str | None = None) -> list[float]:
        return [event.tick for event in self.fired if name is None or event.schedule == name]


def offsets(ticks: list[float], base: float = T0) -> list[float]:
    return [tick - base for tick in ticks]


def memory_pair() -> tuple[MemoryJobQueue, MemoryJobQueue]:
    """Two queues (own event buses) on one memory store: like two processes on one database."""
    shared = MemoryStore()
    return MemoryJobQueue(store=shared), MemoryJobQueue(store=shared)


# -- running callables and jobs -------------------------------------------------------------------------------


@run_async()
async def test_sync_callables_run_in_a_thread_and_async_ones_on_the_loop() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    harness = Harness(scheduler, clock)
    loop_thread = threading.get_ident()
    sync_threads: list[int] = []
    async_threads: list[int] = []

    def sync_job(label: str, *, times: int) -> None:
        assert (label, times) == ("sync", 2)
        sync_threads.append(threading.get_ident())

    async def async_job() -> None:
        async_threads.append(threading.get_ident())

    scheduler.schedule("sync", "every 10s", sync_job, args=("sync",), kwargs={"times": 2})
    scheduler.schedule("async", "* * * * * */10", async_job)
    async with scheduler:
        await harness.advance(30, step=10)
        await wait_until(lambda: len(sync_threads) == 3 and len(async_threads) == 3)
    assert loop_thread not in sync_threads
    assert set(async_threads) == {loop_thread}
    assert offsets(harness.ticks("sync")) == [10, 20, 30]
    assert offsets(harness.ticks("async")) == [10, 20, 30]


@attrs.frozen
class SyncPayload:
    full: bool
    label: str


@run_async()
async def test_job_schedules_enqueue_with_a_per_tick_dedupe_key() -> None:
    catalog = JobCatalog()
    sync_type = define_job_type(type="sync.run", payload=SyncPayload, catalog=catalog)
    clock = ManualClock(T0)
    queue = MemoryJobQueue(catalog=catalog)
    handled: list[Job[Any]] = []
    queue.register(sync_type, handled.append)
    scheduler = JobScheduler(queue, clock=clock)
    harness = Harness(scheduler, clock)
    scheduler.schedule(
        "sync", "*/5 * * * *", job="sync.run", payload={"full": False, "label": "x"}, priority=3
    )
    scheduler.schedule(
        "stamped",
        "*/5 * * * *",
        job=sync_type,
        payload=lambda tick: SyncPayload(full=True, label=tick.isoformat()),
    )
    await queue.start()
    async with scheduler:
        await harness.advance(600, step=300)
        await wait_until(lambda: len(handled) == 4, message="4 scheduled jobs handled")
    await queue.close()
    by_schedule = {
        job.meta["schedule"]: job for job in handled if job.meta["schedule_tick"].endswith("05:00Z")
    }
    plain = by_schedule["sync"]
    assert plain.payload == SyncPayload(full=False, label="x")
    assert plain.dedupe_key == "schedule:sync:2026-05-05T10:05:00Z"
    assert plain.priority == 3
    assert by_schedule["stamped"].payload == SyncPayload(full=True, label="2026-05-05T10:05:00+00:00")
    fired = [event for event in harness.fired if event.schedule == "sync"]
    assert [event.job_id for event in fired] == [job.id for job in handled if job.meta["schedule"] == "sync"]


@run_async()
async def test_a_tick_fired_twice_enqueues_once() -> None:
    # Two schedulers that do NOT share a store (misconfigured) both fire the tick; the dedupe key stops
    # the second job while the first is live.
    clock = ManualClock(T0)
    queue = MemoryJobQueue()
    first = JobScheduler(queue, clock=clock, store=MemorySchedulerStore())
    second = JobScheduler(queue, clock=clock, store=MemorySchedulerStore())
    harness = Harness(first, clock)  # one bus: sees both schedulers' events
    for scheduler in (first, second):
        scheduler.schedule("report", "* * * * *", job="report.build", payload={})
    async with first, second:
        clock.advance(60)
        await wait_until(lambda: len(harness.fired) == 2)
    assert {event.job_id for event in harness.fired} == {harness.fired[0].job_id}
    counts = await queue.counts()
    assert counts["default"][JobStatus.PENDING] == 1
    await queue.close()


def test_job_payloads_are_validated_when_the_schedule_is_defined() -> None:
    catalog = JobCatalog()
    define_job_type(type="sync.run", payload=SyncPayload, catalog=catalog)
    scheduler = JobScheduler(MemoryJobQueue(catalog=catalog))
    with pytest.raises(JobValidationError, match=r"\$.full"):
        scheduler.schedule("sync", "@hourly", job="sync.run", payload={"full": "yes", "label": "x"})
    with pytest.raises(ValueError, match="no queue"):
        JobScheduler().schedule("sync", "@hourly", job="sync.run", payload={})
    with pytest.raises(ValueError, match="either a callable or job"):
        scheduler.schedule("both", "@hourly", print, job="sync.run")
    with pytest.raises(ValueError, match="misfire"):
        scheduler.schedule("bad", "@hourly", print, misfire="sometimes")  # type: ignore[arg-type]


@run_async()
async def test_a_failing_callable_is_logged_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    harness = Harness(scheduler, clock)
    runs: list[float] = []

    def flaky() -> None:
        runs.append(clock.now())
        if len(runs) == 1:
            raise RuntimeError("disk full")

    scheduler.schedule("flaky", "every 60s", flaky)
    async with scheduler:
        await harness.advance(60)
        await wait_until(lambda: scheduler.get("flaky").last_error == "RuntimeError: disk full")
        await harness.advance(60)
        await wait_until(lambda: len(runs) == 2 and scheduler.get("flaky").last_error is None)
    assert "schedule 'flaky' failed on tick 2026-05-05T10:01:00Z" in caplog.text


# -- misfires, restarts ------------------------------------------------------------------------------------------


async def _outage(policy: str, grace: float | None, store: SchedulerStore) -> list[float]:
    """Fire two minutely ticks, stop for 10 minutes, start a new instance: which missed ticks ran?"""
    clock = ManualClock(T0)
    before = JobScheduler(clock=clock, store=store)
    harness = Harness(before, clock)
    before.schedule("minutely", "* * * * *", lambda: None, misfire=policy, misfire_grace=grace)  # type: ignore[arg-type]
    async with before:
        await harness.advance(120, step=60)
    assert offsets(harness.ticks()) == [60, 120]
    clock.advance(630)  # down from 10:02 to 10:12:30: ticks 10:03 ... 10:12 were missed
    after = JobScheduler(clock=clock, store=store)
    harness = Harness(after, clock)
    after.schedule("minutely", "* * * * *", lambda: None, misfire=policy, misfire_grace=grace)  # type: ignore[arg-type]
    async with after:
        await harness.settle()
        caught_up = offsets(harness.ticks())
        await harness.advance(30)  # and the schedule carries on at 10:13
        assert offsets(harness.ticks())[-1] == 780
    return caught_up


@run_async()
async def test_misfire_skip_drops_missed_ticks() -> None:
    assert await _outage("skip", None, MemorySchedulerStore()) == []


@run_async()
async def test_misfire_once_runs_one_for_all_missed_ticks() -> None:
    assert await _outage("once", None, MemorySchedulerStore()) == [720]


@run_async()
async def test_misfire_once_beyond_the_grace_window_runs_nothing() -> None:
    assert await _outage("once", 60, MemorySchedulerStore()) == [720]  # 10:12 is 30 s late: within 60 s
    assert await _outage("once", 20, MemorySchedulerStore()) == []
    clock = ManualClock(T0 + 30)  # half a minute after the last tick
    store = MemorySchedulerStore()
    scheduler = JobScheduler(clock=clock, store=store)
    await store.open()
    await store.ensure("late", now=T0 - 3600)  # last settled an hour before
    harness = Harness(scheduler, clock)
    scheduler.schedule("late", "* * * * *", lambda: None, misfire="once", misfire_grace=20)
    async with scheduler:
        await harness.settle()
    assert harness.ticks() == [], "the latest missed tick is 30s old, beyond the 20s grace"


@run_async()
async def test_misfire_all_runs_every_missed_tick_in_order() -> None:
    assert await _outage("all", None, MemorySchedulerStore()) == [60 * minute for minute in range(3, 13)]


@run_async()
async def test_misfire_all_within_a_grace_window() -> None:
    # back at 10:12:30 with 4 minutes of grace: ticks from 10:08:30 on
    assert await _outage("all", timedelta(minutes=4).total_seconds(), MemorySchedulerStore()) == [
        540,
        600,
        660,
        720,
    ]


@run_async()
async def test_late_ticks_within_the_threshold_are_not_misfires() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock, misfire_threshold=5.0)
    harness = Harness(scheduler, clock)
    scheduler.schedule("s", "* * * * * *", lambda: None, misfire="skip")
    async with scheduler:
        await harness.advance(3)  # three ticks due at once, all within 5 s: on time, all fire
        assert offsets(harness.ticks()) == [1, 2, 3]
        await harness.advance(20)  # 20 ticks, 15 of them more than 5 s late: skipped
        assert offsets(harness.ticks()) == [1, 2, 3, 18, 19, 20, 21, 22, 23]


@run_async()
async def test_restart_on_a_sqlite_store_neither_repeats_nor_misses(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.db"
    clock = ManualClock(T0)
    seen: list[float] = []
    for _restart in range(3):
        scheduler = JobScheduler(clock=clock, store=SqliteSchedulerStore(path), misfire="all")
        harness = Harness(scheduler, clock)
        scheduler.schedule("minutely", "* * * * *", lambda: None)
        async with scheduler:
            await harness.settle()  # a restart at the same instant: nothing fired again
            await harness.advance(180, step=60)
        seen += harness.ticks()
        clock.advance(150)  # down for two and a half minutes, across two ticks
    # every minute from 10:01 to 10:14 exactly once: those passed during the outages were caught up
    assert offsets(seen) == [60.0 * minute for minute in range(1, 15)]
    store = SqliteSchedulerStore(path)
    await store.open()
    claims = await store.claims("minutely", limit=100)
    await store.close()
    assert sorted(claim.tick for claim in claims) == seen


# -- runtime control ---------------------------------------------------------------------------------------------


@run_async()
async def test_pause_resume_and_remove_at_run_time() -> None:
    clock = ManualClock(T0)
    queue = MemoryJobQueue()
    scheduler = JobScheduler(queue, clock=clock)
    harness = Harness(scheduler, clock)
    scheduler.schedule("m", "* * * * *", lambda: None)
    async with scheduler:
        await harness.advance(60)
        assert offsets(harness.ticks()) == [60]
        await scheduler.pause("m")
        assert scheduler.next_run("m") is None
        assert scheduler.get("m").paused
        await harness.advance(180, step=60)
        assert offsets(harness.ticks()) == [60], "a paused schedule fires nowhere"
        await scheduler.resume("m")
        assert scheduler.next_run("m") == datetime.fromtimestamp(T0 + 300, UTC)
        await harness.settle()
        assert offsets(harness.ticks()) == [60], "ticks passed while paused are not caught up"
        await harness.advance(60)
        assert offsets(harness.ticks()) == [60, 300]
        assert await scheduler.remove("m")
        assert "m" not in scheduler
        with pytest.raises(ScheduleNotFoundError):
            scheduler.next_run("m")
        await harness.advance(120, step=60)
        assert offsets(harness.ticks()) == [60, 300]
        assert await scheduler.store.get("m") is None
        assert not await scheduler.remove("m")
        with pytest.raises(ScheduleNotFoundError):
            await scheduler.pause("m")
    await queue.close()


@run_async()
async def test_pause_is_shared_by_every_instance_on_the_store() -> None:
    clock = ManualClock(T0)
    queue_a, queue_b = memory_pair()
    a, b = JobScheduler(queue_a, clock=clock), JobScheduler(queue_b, clock=clock)
    watch_a, watch_b = Harness(a, clock), Harness(b, clock)
    for scheduler in (a, b):
        scheduler.schedule("m", "* * * * *", lambda: None)
    async with a, b:
        await a.pause("m")
        for _ in range(3):
            clock.advance(60)
            await watch_a.settle()
            await watch_b.settle()
        assert watch_a.fired == watch_b.fired == []
        assert b.get("m").paused, "b learnt of the pause from the store"
        await a.resume("m")
        for _ in range(2):
            await watch_a.quiet()
            await watch_b.quiet()
            clock.advance(60)
            await watch_a.settle()
            await watch_b.settle()
        assert sorted(offsets(watch_a.ticks() + watch_b.ticks())) == [240, 300]


@run_async()
async def test_overlap_skip_and_allow() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    harness = Harness(scheduler, clock)
    release = asyncio.Event()
    started: dict[str, int] = {"skip": 0, "allow": 0}

    def slow(label: str) -> Callable[[], Any]:
        async def run() -> None:
            started[label] += 1
            await release.wait()

        return run

    scheduler.schedule("skip", "* * * * *", slow("skip"), overlap="skip")
    scheduler.schedule("allow", "* * * * *", slow("allow"), overlap="allow")
    async with scheduler:
        await harness.advance(180, step=60, quiet=False)
        await wait_until(lambda: started == {"skip": 1, "allow": 3})
        assert scheduler.get("skip").running == 1
        assert scheduler.get("allow").running == 3
        release.set()
        await wait_until(lambda: scheduler.get("skip").running == 0 and scheduler.get("allow").running == 0)
        await harness.advance(60, quiet=False)
        await wait_until(lambda: started["skip"] == 2)
    assert offsets(harness.ticks("skip")) == [60, 240]
    assert offsets(harness.ticks("allow")) == [60, 120, 180, 240]


@run_async()
async def test_next_run_list_replace_and_duplicates() -> None:
    clock = ManualClock(datetime(2026, 3, 28, 12, tzinfo=BERLIN))
    scheduler = JobScheduler(clock=clock, tz="Europe/Berlin")
    scheduler.schedule("night", "30 2 * * *", print)
    assert scheduler.next_run("night") == datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)
    with pytest.raises(ScheduleExistsError):
        scheduler.schedule("night", "0 4 * * *", print)
    scheduler.schedule("night", "0 4 * * *", print, replace=True)
    scheduler.schedule("a-first", "every 1h", print, overlap="allow", misfire="all", misfire_grace=60)
    infos = scheduler.list()
    assert [info.name for info in infos] == ["a-first", "night"]
    assert infos[0].misfire == "all" and infos[0].misfire_grace == 60 and infos[0].overlap == "allow"
    assert infos[1].next_run == datetime(2026, 3, 29, 4, tzinfo=BERLIN)
    assert infos[1].target == "call builtins.print"
    with pytest.raises(ScheduleNotFoundError):
        scheduler.get("nope")


# -- the loop ----------------------------------------------------------------------------------------------------


@run_async()
async def test_the_scheduler_sleeps_until_the_next_tick_and_wakes_on_changes() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    harness = Harness(scheduler, clock)
    scheduler.schedule("daily", "0 3 * * *", print)
    async with scheduler:
        await harness.settle()
        assert harness.checks[-1].next_wakeup == datetime(2026, 5, 6, 3, tzinfo=UTC).timestamp()
        checks = len(harness.checks)
        scheduler.schedule("soon", "every 5 minutes", print)  # no clock move: the change alone wakes it
        await wait_until(lambda: len(harness.checks) > checks)
        assert harness.checks[-1].next_wakeup == T0 + 300
        await scheduler.pause("soon")
        await wait_until(lambda: harness.checks[-1].next_wakeup == T0 + 300)  # paused: polled at its ticks


@run_async()
async def test_stop_is_prompt_and_async_with_works() -> None:
    scheduler = JobScheduler()  # the system clock
    scheduler.schedule("yearly", "@yearly", print)
    scheduler.schedule("minutely", "* * * * *", print)
    started = time.monotonic()
    async with scheduler:
        running_inside = scheduler.running
    assert running_inside and not scheduler.running
    assert time.monotonic() - started < 2.0
    await scheduler.start()  # restartable
    started = time.monotonic()
    await scheduler.stop()
    assert time.monotonic() - started < 1.0


@run_async()
async def test_stop_waits_for_running_callables_then_cancels_async_ones() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock, shutdown_timeout=0.2)
    harness = Harness(scheduler, clock)
    finished: list[str] = []
    cancelled: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0.05)
        finished.append("quick")

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("stuck")
            raise

    scheduler.schedule("quick", "* * * * *", quick)
    scheduler.schedule("stuck", "* * * * *", stuck)
    await scheduler.start()
    await harness.advance(60)
    await scheduler.stop()
    assert finished == ["quick"] and cancelled == ["stuck"]
    assert scheduler.get("stuck").last_error == "cancelled at shutdown"


@run_async()
async def test_run_due_drives_a_scheduler_without_starting_it() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    runs: list[float] = []

    async def record() -> None:
        runs.append(clock.now())

    scheduler.schedule("m", "* * * * *", record, misfire="all")
    assert await scheduler.run_due() == 0
    clock.advance(180)
    assert await scheduler.run_due() == 3
    await wait_until(lambda: len(runs) == 3)
    assert await scheduler.run_due() == 0
    await scheduler.stop()


@run_async()
async def test_instances_on_one_store_fire_each_tick_once() -> None:
    clock = ManualClock(T0)
    shared = MemoryStore()
    schedulers = [
        JobScheduler(MemoryJobQueue(store=shared), clock=clock, instance_id=f"i{n}") for n in range(3)
    ]
    harnesses = [Harness(scheduler, clock) for scheduler in schedulers]
    runs: list[float] = []
    for scheduler in schedulers:
        scheduler.schedule("s", "* * * * * *", lambda: runs.append(clock.now()))
    for scheduler in schedulers:
        await scheduler.start()
    for _ in range(30):
        for harness in harnesses:
            await harness.quiet()
        clock.advance(1)
        for harness in harnesses:
            await harness.settle()
    for scheduler in schedulers:
        await scheduler.stop()
    fired = sorted(tick for harness in harnesses for tick in harness.ticks())
    assert offsets(fired) == list(range(1, 31))
    assert len(runs) == 30
    claims = await schedulers[0].store.claims("s", limit=100)
    assert {claim.claimed_by for claim in claims} <= {"i0", "i1", "i2"}


@run_async()
async def test_the_scheduler_follows_the_dst_rule_end_to_end() -> None:
    clock = ManualClock(datetime(2026, 3, 28, 12, tzinfo=BERLIN))
    scheduler = JobScheduler(clock=clock, tz="Europe/Berlin")
    harness = Harness(scheduler, clock)
    scheduler.schedule("night", "30 2 * * *", lambda: None)
    scheduler.schedule("hourly", "@hourly", lambda: None)
    async with scheduler:
        await harness.advance(24 * 3600, step=900)  # through the spring-forward night
        night = [
            datetime.fromtimestamp(tick, BERLIN).strftime("%d %H:%M %Z") for tick in harness.ticks("night")
        ]
        assert night == ["29 03:30 CEST"]
        hourly = harness.ticks("hourly")
        assert len(hourly) == 24 and {b - a for a, b in itertools.pairwise(hourly)} == {3600.0}
        clock.set(datetime(2026, 10, 24, 12, tzinfo=BERLIN))
        await harness.settle()  # a jump of months: the once policy runs one coalesced tick each
        harness.fired.clear()
        await harness.advance(24 * 3600, step=900)  # through the fall-back night (25 hours long)
        night = [
            datetime.fromtimestamp(tick, BERLIN).strftime("%d %H:%M %Z") for tick in harness.ticks("night")
        ]
        assert night == ["25 02:30 CEST"]
        assert len(harness.ticks("hourly")) == 24


@run_async()
async def test_tick_keys_and_events() -> None:
    assert tick_key(T0) == "2026-05-05T10:00:00Z"
    assert tick_key(T0 + 0.25) == "2026-05-05T10:00:00.250000Z"
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    harness = Harness(scheduler, clock)
    scheduler.schedule("m", "* * * * *", print)
    scheduler.schedule("h", "@hourly", print)
    async with scheduler:
        await harness.advance(60)
    assert harness.checks[-1].due == 1
    assert harness.checks[-1].next_wakeup == T0 + 120
    assert [(event.schedule, event.tick, event.job_id) for event in harness.fired] == [("m", T0 + 60, None)]


# -- the command-line hook-up ----------------------------------------------------------------------------------


def test_resolve_scheduler_accepts_the_app_shapes() -> None:
    queue = MemoryJobQueue()
    scheduler = JobScheduler(queue)
    module = types.ModuleType("lssm_test_app")
    module.queue = queue  # type: ignore[attr-defined]
    module.scheduler = scheduler  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        assert resolve_scheduler(scheduler) is scheduler
        assert resolve_scheduler(lambda: scheduler) is scheduler
        assert resolve_scheduler(queue, module) is scheduler
        assert resolve_scheduler(queue, "lssm_test_app") is scheduler
        with pytest.raises(LookupError, match="defines no JobScheduler"):
            resolve_scheduler(MemoryJobQueue(), module)
        with pytest.raises(TypeError):
            resolve_scheduler(42)
    finally:
        del sys.modules[module.__name__]


@run_async()
async def test_run_scheduler_until_stopping(tmp_path: Path) -> None:
    queue: JobQueue = open_queue("sqlite", path=str(tmp_path / "jobs.db"))
    clock = ManualClock(T0)
    scheduler = JobScheduler(queue, clock=clock)
    harness = Harness(scheduler, clock)
    scheduler.schedule("m", "* * * * *", job="report.build", payload={})
    stopping = asyncio.Event()
    runner = asyncio.create_task(run_scheduler(scheduler, stopping))
    await wait_until(lambda: scheduler.running)
    await harness.advance(120, step=60)
    stopping.set()
    await asyncio.wait_for(runner, 5)
    assert not scheduler.running
    counts = await queue.counts()
    assert counts["default"][JobStatus.PENDING] == 2
    await queue.close()


def test_memory_data_is_per_store_object() -> None:
    data = MemorySchedulerData()
    assert MemorySchedulerStore(data).data is MemorySchedulerStore(data).data
