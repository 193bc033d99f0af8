"""Misfire and overlap planning as a pure function: a trigger, a cursor, a time and the policies in, a plan
out. No store, no clock, no event loop."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from lssm_jobs.scheduler import (
    CronTrigger,
    IntervalTrigger,
    TickPlan,
    plan_due_ticks,
)
from lssm_jobs.scheduler.misfire import MisfirePolicy

T0 = 1_800_000_000.0  # a multiple of 60: minute ticks fall on it
MINUTE = IntervalTrigger(60)


def plan(
    now: float,
    *,
    misfire: MisfirePolicy = "once",
    grace: float | None = None,
    threshold: float = 1.0,
    busy: bool = False,
    cursor: float = T0,
    trigger: IntervalTrigger | CronTrigger = MINUTE,
) -> TickPlan:
    first_due = trigger.next_fire(cursor)
    assert first_due is not None and first_due <= now
    return plan_due_ticks(
        trigger,
        cursor=cursor,
        first_due=first_due,
        now=now,
        misfire=misfire,
        misfire_grace=grace,
        misfire_threshold=threshold,
        busy=busy,
    )


@pytest.mark.parametrize("misfire", ["skip", "once", "all"])
def test_a_tick_on_time_fires_whatever_the_policy(misfire: MisfirePolicy) -> None:
    assert plan(T0 + 60.5, misfire=misfire) == TickPlan(fire="due")


def test_the_threshold_is_inclusive() -> None:
    assert plan(T0 + 61.0, misfire="skip") == TickPlan(fire="due")
    assert plan(T0 + 61.5, misfire="skip").settle_through == T0 + 60


def test_skip_settles_the_missed_ticks_and_fires_the_one_on_time() -> None:
    # ticks at +60 .. +300 were missed by more than the threshold; +360 is 0.5 s late: on time
    assert plan(T0 + 360.5, misfire="skip") == TickPlan(
        settle_through=T0 + 300, settle_reason="missed (misfire policy skip)", fire="due"
    )


def test_skip_settles_everything_when_even_the_latest_tick_is_late() -> None:
    result = plan(T0 + 330, misfire="skip")
    assert result.settle_through == T0 + 300 and result.fire == "due"  # nothing left due: fires nothing


def test_once_fires_the_latest_tick_for_all_the_missed_ones() -> None:
    assert plan(T0 + 330, misfire="once") == TickPlan(fire="one", tick=T0 + 300, missed_from=T0 + 60)


def test_once_with_one_late_tick_names_no_missed_range() -> None:
    assert plan(T0 + 90, misfire="once") == TickPlan(fire="one", tick=T0 + 60)


def test_once_settles_a_latest_tick_older_than_the_grace() -> None:
    assert plan(T0 + 330, misfire="once", grace=20) == TickPlan(
        settle_through=T0 + 300, settle_reason="missed by more than the 20s grace"
    )
    assert plan(T0 + 330, misfire="once", grace=30).fire == "one"  # exactly the grace old: still fires


def test_all_fires_every_missed_tick() -> None:
    assert plan(T0 + 330, misfire="all") == TickPlan(fire="due")


def test_all_settles_the_ticks_older_than_the_grace_and_fires_the_rest() -> None:
    assert plan(T0 + 330, misfire="all", grace=100) == TickPlan(
        settle_through=T0 + 180, settle_reason="missed by more than the 100s grace", fire="due"
    )


def test_all_with_a_grace_every_tick_is_within_fires_them_all() -> None:
    assert plan(T0 + 330, misfire="all", grace=1000) == TickPlan(fire="due")


@pytest.mark.parametrize("misfire", ["skip", "once", "all"])
def test_busy_settles_every_due_tick_whatever_the_policy(misfire: MisfirePolicy) -> None:
    assert plan(T0 + 200, misfire=misfire, busy=True) == TickPlan(
        settle_through=T0 + 180, settle_reason="the previous run is still going (overlap skip)"
    )


def test_planning_follows_the_trigger_across_a_dst_change() -> None:
    # 02:30 daily in Berlin; the clocks jumped from 02:00 to 03:00 on 2026-03-29, when 02:30 did not exist and
    # the tick is at 03:30 CEST (01:30 UTC). A scheduler down from the 27th to the 30th plans with those.
    trigger = CronTrigger("30 2 * * *", tz="Europe/Berlin")
    cursor = datetime(2026, 3, 27, 12, tzinfo=timezone.utc).timestamp()
    now = datetime(2026, 3, 30, 12, tzinfo=timezone.utc).timestamp()
    result = plan(now, misfire="once", trigger=trigger, cursor=cursor)
    assert result.tick == datetime(2026, 3, 30, 0, 30, tzinfo=timezone.utc).timestamp()
    assert result.missed_from == datetime(2026, 3, 28, 1, 30, tzinfo=timezone.utc).timestamp()
    after_grace = plan(now, misfire="all", grace=36 * 3600, trigger=trigger, cursor=cursor)
    assert after_grace.settle_through == datetime(2026, 3, 28, 1, 30, tzinfo=timezone.utc).timestamp()
    first_fired = trigger.next_fire(after_grace.settle_through)
    assert first_fired == datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc).timestamp()
