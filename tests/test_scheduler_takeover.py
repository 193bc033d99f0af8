"""Crash safety on a manual clock: a tick claimed by an instance that dies before it has fired (before the
enqueue, or before the callable returned) is taken over and fired by another instance once the claim
timeout has passed, exactly once; a live instance keeps its claim by renewing it while it fires."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import pytest
from lssm_jobs.backends.memory import MemoryStore
from lssm_jobs.events import Event, ScheduleFired, SchedulerTick
from lssm_jobs.jobs import JobStatus
from lssm_jobs.queue import MemoryJobQueue
from lssm_jobs.scheduler import JobScheduler, ManualClock, MemorySchedulerStore, current_tick, tick_key
from lssm_jobs.scheduler.memory_store import MemorySchedulerData
from lssm_jobs.testing.helpers import run_async, wait_until

T0 = datetime(2026, 5, 5, 10, 0, tzinfo=timezone.utc).timestamp()  # a round minute
TIMEOUT = 30.0  # the claim timeout of these tests


class Instance:
    """One scheduler instance on the shared data, with its own queue bus and what it fired."""

    def __init__(self, name: str, clock: ManualClock, data: MemorySchedulerData, shared: MemoryStore) -> None:
        self.clock = clock
        self.queue = MemoryJobQueue(store=shared)
        self.scheduler = JobScheduler(
            self.queue,
            clock=clock,
            store=MemorySchedulerStore(data),
            instance_id=name,
            claim_timeout=TIMEOUT,
        )
        self.checks: list[SchedulerTick] = []
        self.fired: list[ScheduleFired] = []
        self.scheduler.on("scheduler.tick", self._on_event)
        self.scheduler.on("scheduler.fired", self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SchedulerTick):
            self.checks.append(event)
        elif isinstance(event, ScheduleFired):
            self.fired.append(event)

    async def settle(self) -> None:
        """Wait until the instance has checked at the clock's current time."""
        now = self.clock.now()
        await wait_until(
            lambda: max((check.timestamp for check in self.checks), default=-math.inf) >= now,
            message=f"a check of {self.scheduler.instance_id}",
        )

    def ticks(self) -> list[float]:
        return [event.tick - T0 for event in self.fired]


@pytest.fixture
def world() -> tuple[ManualClock, MemorySchedulerData, MemoryStore]:
    return ManualClock(T0), MemorySchedulerData(), MemoryStore()


async def _finished(instance: Instance, schedule: str) -> None:
    await wait_until(
        lambda: instance.scheduler.get(schedule).running == 0, message=f"{schedule}'s runs returned"
    )


async def _advance(clock: ManualClock, seconds: float, *instances: Instance) -> None:
    clock.advance(seconds)
    for instance in instances:
        await instance.settle()


@run_async()
async def test_a_tick_claimed_by_an_instance_that_died_is_fired_once_after_the_claim_timeout(
    world: tuple[ManualClock, MemorySchedulerData, MemoryStore],
) -> None:
    clock, data, shared = world
    survivor = Instance("survivor", clock, data, shared)
    runs: list[float] = []

    def record() -> None:
        tick = current_tick()
        assert tick is not None
        runs.append(tick.timestamp() - T0)

    survivor.scheduler.schedule("minutely", "* * * * *", record)
    store = MemorySchedulerStore(data)
    async with survivor.scheduler:
        await survivor.settle()
        # Another instance claims 10:01 and dies before firing it (SIGKILL between claim and fire).
        assert await store.claim("minutely", T0 + 60, owner="dead", now=T0 + 60, next_tick=T0 + 120)
        await _advance(clock, 60, survivor)  # 10:01: the survivor loses the claim...
        assert runs == [] and survivor.fired == []
        # ...and plans to look again when the claim would go stale: a real clock sleeps until then
        assert survivor.checks[-1].next_wakeup == T0 + 60 + TIMEOUT
        await _advance(clock, TIMEOUT - 1, survivor)
        assert survivor.fired == [], "the claim is not stale yet"
        await _advance(clock, 1, survivor)  # 10:01:30: stale, taken over, fired
        await wait_until(lambda: runs == [60])
        assert survivor.ticks() == [60]
        # Each run returns before the clock jumps to the next tick: one still going would have that tick
        # skipped (overlap "skip"), which a loaded machine otherwise makes happen now and then.
        await _finished(survivor, "minutely")
        await _advance(clock, 30, survivor)  # 10:02 fires as usual
        await wait_until(lambda: runs == [60, 120])
        for expected in (3, 4, 5):  # 10:03 to 10:05, with nothing fired twice
            await _finished(survivor, "minutely")
            await _advance(clock, 60, survivor)
            await wait_until(lambda: len(runs) == expected)  # noqa: B023 - awaited within the iteration
    assert runs == [60, 120, 180, 240, 300]
    claims = {claim.tick - T0: claim for claim in await store.claims("minutely")}
    assert (claims[60].claimed_by, claims[60].attempts) == ("survivor", 2)
    assert {claim.attempts for tick, claim in claims.items() if tick != 60} == {1}
    assert all(claim.finished for claim in claims.values())
    assert await store.unfinished_claims() == []


@run_async()
async def test_an_instance_takes_over_abandoned_claims_when_it_starts(
    world: tuple[ManualClock, MemorySchedulerData, MemoryStore],
) -> None:
    clock, data, shared = world
    store = MemorySchedulerStore(data)
    await store.ensure("minutely", now=T0)
    # "i1" claimed 10:01 and was killed; it comes back (same instance id) ten minutes later
    assert await store.claim("minutely", T0 + 60, owner="i1", now=T0 + 60, next_tick=T0 + 120)
    await store.advance("minutely", T0 + 600, now=T0 + 600, next_tick=T0 + 660)  # the others went on
    clock.set(T0 + 630)
    restarted = Instance("i1", clock, data, shared)
    runs: list[float] = []
    restarted.scheduler.schedule("minutely", "* * * * *", lambda: runs.append(clock.now()))
    async with restarted.scheduler:
        await restarted.settle()
        await wait_until(lambda: len(runs) == 1)
    assert restarted.ticks() == [60], "the abandoned tick fired in the first check, nothing else"
    (claim,) = [claim for claim in await store.claims("minutely") if claim.tick == T0 + 60]
    assert claim.finished and claim.attempts == 2


@run_async()
async def test_a_run_cut_short_is_run_again_by_another_instance(
    world: tuple[ManualClock, MemorySchedulerData, MemoryStore],
) -> None:
    clock, data, shared = world
    first, second = Instance("first", clock, data, shared), Instance("second", clock, data, shared)
    started: list[str] = []
    finished: list[tuple[str, str]] = []

    def job_for(instance: str) -> Callable[[], Awaitable[None]]:
        async def report() -> None:
            tick = current_tick()
            assert tick is not None
            started.append(instance)
            if instance == "first":
                await asyncio.Event().wait()  # stuck until its process goes away
            finished.append((instance, tick_key(tick.timestamp())))

        return report

    first.scheduler.schedule("report", "* * * * *", job_for("first"))
    second.scheduler.schedule("report", "* * * * *", job_for("second"))
    async with first.scheduler:
        await first.settle()
        await _advance(clock, 60, first)  # only "first" runs: it claims 10:01 and starts the run
        await wait_until(lambda: started == ["first"])
        await second.scheduler.start()
        await second.settle()
        await first.scheduler.stop(timeout=0)  # "first" goes away mid-run; its claim stays unfinished
        await _advance(clock, TIMEOUT / 2, second)
        assert started == ["first"], "the claim's lease is not over yet"
        await _advance(clock, TIMEOUT / 2, second)
        await wait_until(lambda: finished == [("second", "2026-05-05T10:01:00Z")])
        await second.scheduler.stop()
    assert second.ticks() == [60]
    (claim,) = await MemorySchedulerStore(data).claims("report")
    assert claim.finished and claim.claimed_by == "second" and claim.attempts == 2


@run_async()
async def test_a_long_run_keeps_its_claim_by_renewing_it(
    world: tuple[ManualClock, MemorySchedulerData, MemoryStore],
) -> None:
    clock, data, shared = world
    first, second = Instance("first", clock, data, shared), Instance("second", clock, data, shared)
    release = asyncio.Event()
    runs: list[str] = []

    def job_for(instance: str) -> Callable[[], Awaitable[None]]:
        async def crunch() -> None:
            runs.append(instance)
            await release.wait()

        return crunch

    # a daily schedule: its one tick's run lasts five claim timeouts
    first.scheduler.schedule("crunch", "0 10 * * *", job_for("first"))
    second.scheduler.schedule("crunch", "0 10 * * *", job_for("second"))
    clock.set(T0 - 1)
    async with first.scheduler:
        await first.settle()
        await _advance(clock, 1, first)
        await wait_until(lambda: runs == ["first"])
        async with second.scheduler:
            for _ in range(int(5 * TIMEOUT / 5)):
                await _advance(clock, 5, first, second)
                await asyncio.sleep(0)  # let the renewal that the move woke up reach the store
            assert runs == ["first"], "the running instance renewed its claim: nobody took it over"
            release.set()
            await wait_until(lambda: first.scheduler.get("crunch").running == 0)
            await _advance(clock, 2 * TIMEOUT, first, second)
    assert runs == ["first"]
    (claim,) = await MemorySchedulerStore(data).claims("crunch")
    assert claim.finished and claim.claimed_by == "first" and claim.attempts == 1
    assert claim.claimed_at > T0 + 3 * TIMEOUT, "renewed while running"


@run_async()
async def test_a_job_tick_taken_over_is_enqueued_once(
    world: tuple[ManualClock, MemorySchedulerData, MemoryStore],
) -> None:
    clock, data, shared = world
    survivor = Instance("survivor", clock, data, shared)
    survivor.scheduler.schedule("sync", "* * * * *", job="sync.run", payload={"full": False})
    store = MemorySchedulerStore(data)
    async with survivor.scheduler:
        await survivor.settle()
        # 10:01: the dead instance enqueued the job, then died before it marked the claim done
        assert await store.claim("sync", T0 + 60, owner="dead", now=T0 + 60, next_tick=None)
        enqueued = await survivor.queue.enqueue(
            "sync.run", {"full": False}, dedupe_key=f"schedule:sync:{tick_key(T0 + 60)}"
        )
        await _advance(clock, 60, survivor)
        assert survivor.fired == []
        # 10:02: the dead instance claimed, and died before enqueueing anything
        assert await store.claim("sync", T0 + 120, owner="dead", now=T0 + 120, next_tick=None)
        await _advance(clock, 60, survivor)  # the claim on 10:01 is stale by now: taken over
        assert survivor.ticks() == [60]
        await _advance(clock, TIMEOUT, survivor)  # 10:02:30: the claim on 10:02 is stale too
    assert survivor.ticks() == [60, 120]
    assert survivor.fired[0].job_id == enqueued.id, "the tick's dedupe key found the job already enqueued"
    counts = await survivor.queue.counts()
    assert counts["default"][JobStatus.PENDING] == 2, "one job per tick"
    assert await store.unfinished_claims() == []
    await survivor.queue.close()


@run_async()
async def test_a_taken_over_tick_older_than_the_misfire_grace_is_not_fired(
    world: tuple[ManualClock, MemorySchedulerData, MemoryStore],
) -> None:
    clock, data, shared = world
    store = MemorySchedulerStore(data)
    await store.ensure("minutely", now=T0)
    assert await store.claim("minutely", T0 + 60, owner="dead", now=T0 + 60, next_tick=None)
    await store.advance("minutely", T0 + 300, now=T0 + 300, next_tick=None)
    clock.set(T0 + 330)  # the abandoned 10:01 tick is 4.5 minutes old
    survivor = Instance("survivor", clock, data, shared)
    survivor.scheduler.schedule("minutely", "* * * * *", lambda: None, misfire_grace=120)
    async with survivor.scheduler:
        await survivor.settle()
    assert survivor.fired == []
    (claim,) = [claim for claim in await store.claims("minutely") if claim.tick == T0 + 60]
    assert claim.finished and claim.claimed_by == "survivor", "settled without firing, never looked at again"


def test_the_claim_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="claim_timeout"):
        JobScheduler(claim_timeout=0)
