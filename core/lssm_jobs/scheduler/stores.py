"""The scheduler store contract: per-schedule state and the per-tick claims that let several scheduler
instances (threads, processes, machines) fire each tick exactly once.

Semantics every store implements (the contract tests in :mod:`lssm_jobs.scheduler.contract` check them):

* A schedule's row holds ``last_tick``: every tick at or before it is *settled* (fired, or deliberately
  skipped by a misfire or overlap policy, or passed while paused) and never fires again. A new row starts
  at the time it was created, so history before a schedule existed is not "missed".
* :meth:`SchedulerStore.claim` is atomic: it succeeds for exactly one caller per ``(schedule, tick)``, and
  only while the schedule exists, is not paused, and ``tick > last_tick``; success records the claim and
  sets ``last_tick = tick``. Everything else returns False, never raises for a lost race.
* :meth:`SchedulerStore.advance` only ever moves ``last_tick`` forward (``max``), so a late or slow instance
  cannot re-open a tick another one settled.
* Methods raise ``ConnectionError`` (or a subclass) when the storage cannot be reached, and nothing else for
  ordinary outcomes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import attrs


@attrs.frozen(kw_only=True)
class ScheduleState:
    """A schedule as the store knows it.

    :param last_tick: epoch seconds; ticks at or before it are settled (None only for stores that cannot
        tell, which the scheduler treats as "now").
    :param next_tick: the next tick due, as last computed by an instance (for listings; informational).
    :param paused: paused schedules fire nowhere; shared by every instance on the store.
    """

    name: str
    last_tick: float | None
    next_tick: float | None
    paused: bool
    updated_at: float


@attrs.frozen(kw_only=True)
class TickClaim:
    """One fired tick: which instance claimed it, and when."""

    schedule: str
    tick: float
    claimed_by: str
    claimed_at: float


class SchedulerStore(ABC):
    """Scheduler state shared by every scheduler instance that should fire a tick only once between them.

    Stores are created by a :class:`~lssm_jobs.registrations.SchedulerStoreSpec` factory (or directly),
    opened once before use and closed once. All methods are coroutines and must not block the event loop.
    """

    #: The registered name (``"memory"``, ``"sqlite"``, ...).
    name: str = ""

    async def open(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Connect, and create tables or keys if needed. :raises ConnectionError: unreachable."""

    async def close(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Release connections."""

    @abstractmethod
    async def ensure(self, name: str, *, now: float) -> ScheduleState:
        """The schedule's state, creating it (``last_tick = now``, not paused) when missing.

        Idempotent and race-free: when several instances ensure the same new schedule, one row is created and
        every caller gets it; an existing row is returned unchanged.
        """

    @abstractmethod
    async def get(self, name: str) -> ScheduleState | None:
        """The schedule's state, or None when the store has no such schedule."""

    @abstractmethod
    async def states(self) -> list[ScheduleState]:
        """Every schedule the store knows, sorted by name (listings, ``lssm-jobs`` commands)."""

    @abstractmethod
    async def claim(self, name: str, tick: float, *, owner: str, now: float, next_tick: float | None) -> bool:
        """Atomically claim ``tick`` of schedule ``name`` for instance ``owner``.

        :returns: True for exactly one caller per ``(name, tick)``, and only when the schedule exists, is not
            paused and ``tick > last_tick``. On True the claim is recorded (``claimed_at = now``),
            ``last_tick`` becomes ``tick`` and ``next_tick`` is stored. False otherwise: another instance
            won, the tick is settled, the schedule is paused or gone.
        """

    @abstractmethod
    async def advance(self, name: str, tick: float, *, now: float, next_tick: float | None) -> None:
        """Settle ticks up to ``tick`` without firing them: ``last_tick = max(last_tick, tick)``, and store
        ``next_tick``. Does nothing when the schedule is gone."""

    @abstractmethod
    async def set_paused(self, name: str, paused: bool, *, now: float) -> ScheduleState | None:
        """Pause or resume a schedule for every instance. Resuming settles the ticks that passed while it
        was paused (``last_tick = max(last_tick, now)``), so they are not treated as missed.

        :returns: the new state, or None when there is no such schedule.
        """

    @abstractmethod
    async def delete(self, name: str) -> bool:
        """Forget a schedule and its claims. :returns: False when there was no such schedule."""

    @abstractmethod
    async def claims(self, name: str, *, limit: int = 100) -> list[TickClaim]:
        """The schedule's recorded claims, newest tick first (at most ``limit``)."""

    @abstractmethod
    async def prune_claims(self, *, before: float) -> int:
        """Delete claims made before ``before`` (epoch seconds); ``last_tick`` keeps those ticks settled.

        :returns: how many were deleted.
        """
