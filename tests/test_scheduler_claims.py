"""Tick claims as one scheduler instance makes them (lssm_jobs.scheduler.claims), on a memory store and a
manual clock: a lost claim, claims alive and abandoned, take-over."""

from __future__ import annotations

import math

from lssm_jobs.scheduler import ManualClock, MemorySchedulerStore
from lssm_jobs.scheduler.claims import TickClaims
from lssm_jobs.testing import run_async

T0 = 1_800_000_000.0


@run_async()
async def test_claims_lost_alive_and_abandoned() -> None:
    store = MemorySchedulerStore()
    clock = ManualClock(T0)
    defined = {"a", "b", "c"}
    first = TickClaims(store, owner="first", clock=clock, claim_timeout=60, defines=defined.__contains__)
    second = TickClaims(store, owner="second", clock=clock, claim_timeout=60, defines=defined.__contains__)
    for name in ("a", "b", "c", "undefined"):
        await store.ensure(name, now=T0)
    assert await first.claim("a", T0 + 60, now=T0, next_tick=None)
    assert await first.claim("b", T0 + 60, now=T0 + 30, next_tick=None)
    assert await first.claim("c", T0 + 60, now=T0, next_tick=None)
    assert await first.claim("undefined", T0 + 60, now=T0, next_tick=None)
    assert second.stale_at == math.inf
    assert not await second.claim("a", T0 + 60, now=T0 + 1, next_tick=None)
    assert second.stale_at == T0 + 61  # the winner might die: look again one claim timeout later
    second.firing.add(("c", T0 + 60))  # as if "second" were firing it itself
    # at T0 + 75, "a" (claimed at T0) is abandoned, "b" (claimed at T0 + 30) is alive until T0 + 90
    abandoned = await second.abandoned(T0 + 75)
    assert [claim.schedule for claim in abandoned] == ["a"]
    assert second.stale_at == T0 + 90 and not second.look_due(T0 + 89) and second.look_due(T0 + 90)
    assert await second.take_over(abandoned[0], now=T0 + 75)
    assert not await first.take_over(abandoned[0], now=T0 + 75)  # taken already, and renewed by the take-over
    second.reset()
    assert second.look_due(-math.inf)
