"""Misfire and overlap planning: what one scheduler check does with the ticks of a schedule that are due.

:func:`plan_due_ticks` is a pure function of the schedule's trigger, its cursor (ticks at or before it are
settled), the time and the policies: no store, no clock, no I/O. ``JobScheduler`` carries the plan out.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import attrs

MisfirePolicy = Literal["skip", "once", "all"]
OverlapPolicy = Literal["skip", "allow"]
MISFIRE_POLICIES: tuple[str, ...] = ("skip", "once", "all")
OVERLAP_POLICIES: tuple[str, ...] = ("skip", "allow")


class TickSource(Protocol):
    """What planning needs of a :class:`~lssm_jobs.scheduler.triggers.Trigger`."""

    def latest_fire(self, after: float, until: float) -> float | None: ...


@attrs.frozen(kw_only=True)
class TickPlan:
    """What to do with a schedule's due ticks, in this order.

    :param settle_through: settle every tick up to and including this one without firing it (None: none).
    :param settle_reason: why, for the log.
    :param fire: ``"none"``; ``"one"``: fire the single tick ``tick``; ``"due"``: fire every tick due by
        now, oldest first.
    :param tick: with ``fire="one"``, the tick to fire.
    :param missed_from: with ``fire="one"`` standing for several missed ticks, the first of them.
    """

    settle_through: float | None = None
    settle_reason: str = ""
    fire: Literal["none", "one", "due"] = "none"
    tick: float | None = None
    missed_from: float | None = None


def plan_due_ticks(
    trigger: TickSource,
    *,
    cursor: float,
    first_due: float,
    now: float,
    misfire: MisfirePolicy,
    misfire_grace: float | None,
    misfire_threshold: float,
    busy: bool = False,
) -> TickPlan:
    """Plan a check of one schedule whose first unsettled tick ``first_due`` (after ``cursor``) is due
    (``first_due <= now``).

    * ``busy`` (overlap ``"skip"`` with a run from an earlier check still going): every due tick is settled.
    * A first tick at most ``misfire_threshold`` seconds late is on time: every due tick fires.
    * Otherwise ticks were missed, and ``misfire`` decides: ``"skip"`` settles those more than the threshold
      late and fires the rest; ``"once"`` fires only the latest due tick, standing for all of them;
      ``"all"`` fires every one, oldest first. ``misfire_grace`` (seconds; None: no limit) bounds how old a
      tick ``"once"`` or ``"all"`` still fires: older ones are settled.
    """
    if busy:
        latest = trigger.latest_fire(cursor, now)
        if latest is None:
            return TickPlan()
        return TickPlan(settle_through=latest, settle_reason="the previous run is still going (overlap skip)")
    if now - first_due <= misfire_threshold:
        return TickPlan(fire="due")
    if misfire == "skip":
        last_missed = trigger.latest_fire(cursor, math.nextafter(now - misfire_threshold, -math.inf))
        return _settling(last_missed, "missed (misfire policy skip)", fire="due")
    too_old = f"missed by more than the {misfire_grace:.0f}s grace" if misfire_grace is not None else ""
    if misfire == "once":
        latest = trigger.latest_fire(cursor, now)
        if latest is None:
            return TickPlan()
        if misfire_grace is not None and now - latest > misfire_grace:
            return TickPlan(settle_through=latest, settle_reason=too_old)
        return TickPlan(fire="one", tick=latest, missed_from=first_due if latest != first_due else None)
    # "all": every missed tick within the grace window, oldest first
    if misfire_grace is None:
        return TickPlan(fire="due")
    horizon = math.nextafter(now - misfire_grace, -math.inf)
    return _settling(trigger.latest_fire(cursor, horizon), too_old, fire="due")


def _settling(tick: float | None, reason: str, *, fire: Literal["none", "due"]) -> TickPlan:
    if tick is None:
        return TickPlan(fire=fire)
    return TickPlan(settle_through=tick, settle_reason=reason, fire=fire)
