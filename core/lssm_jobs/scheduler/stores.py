"""The scheduler store contract: per-schedule state and the per-tick claims that let several scheduler
instances (threads, processes, machines) fire each tick exactly once, and finish it even when the
instance that claimed it dies.

Semantics every store implements (the contract tests in :mod:`lssm_jobs.testing.scheduler_stores` check them):

* A schedule's row holds ``last_tick``: every tick at or before it is *settled* (claimed, or deliberately
  skipped by a misfire or overlap policy, or passed while paused) and is never claimed again. A new row
  starts at the time it was created, so history before a schedule existed is not "missed".
* :meth:`SchedulerStore.claim` is atomic: it succeeds for exactly one caller per ``(schedule, tick)``, and
  only while the schedule exists, is not paused, and ``tick > last_tick``; success records an *unfinished*
  claim and sets ``last_tick = tick``. Everything else returns False, never raises for a lost race.
* Firing is two-phase. The claim stays unfinished until its holder calls :meth:`SchedulerStore.complete`
  (after the job was enqueued, or the callable returned). While firing, the holder renews the claim
  (:meth:`SchedulerStore.renew`); the claim's *lease* runs from ``claimed_at``. A claim whose lease is older
  than the scheduler's claim timeout belongs to an instance that died (SIGKILL, OOM, power loss), and any
  instance may take it over with :meth:`SchedulerStore.take_over`, which succeeds for exactly one caller.
* :meth:`SchedulerStore.advance` only ever moves ``last_tick`` forward (``max``), so a late or slow instance
  cannot re-open a tick another one settled.
* Methods raise ``ConnectionError`` (or a subclass) when the storage cannot be reached, and nothing else for
  ordinary outcomes.

Times are epoch seconds from the schedulers' clocks; instances sharing a store need clocks that agree to
well within the claim timeout.
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
    """One claimed tick: which instance holds it, since when, and whether it has finished firing.

    :param claimed_by: the instance that claimed the tick, or took the claim over last.
    :param claimed_at: when ``claimed_by`` claimed, took over or last renewed the claim; its lease runs
        from here.
    :param completed_at: when firing finished (the job was enqueued, the callable returned); None while the
        tick is in flight.
    :param attempts: 1, plus one per take-over: how many instances set out to fire the tick.
    """

    schedule: str
    tick: float
    claimed_by: str
    claimed_at: float
    completed_at: float | None = None
    attempts: int = 1

    @property
    def finished(self) -> bool:
        return self.completed_at is not None


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
            paused and ``tick > last_tick``. On True an unfinished claim is recorded (``claimed_by = owner``,
            ``claimed_at = now``, ``attempts = 1``), ``last_tick`` becomes ``tick`` and ``next_tick`` is
            stored. False otherwise: another instance won, the tick is settled, the schedule is paused or
            gone.
        """

    @abstractmethod
    async def renew(self, name: str, tick: float, *, owner: str, now: float) -> bool:
        """Extend ``owner``'s lease on an unfinished claim (``claimed_at = now``) while it is still firing.

        :returns: False, changing nothing, when the claim is not ``owner``'s any more (taken over), is
            finished, or is gone (schedule deleted, claim pruned).
        """

    @abstractmethod
    async def complete(self, name: str, tick: float, *, owner: str, now: float) -> bool:
        """Mark the claim of ``tick`` finished (``completed_at = now``): the tick has fired.

        The claim is finished whoever holds it, since the tick did fire; a finished claim is never taken
        over.

        :returns: True when ``owner`` held the unfinished claim; False when another instance had taken it
            over (the tick may fire twice), it was already finished, or there is no such claim.
        """

    @abstractmethod
    async def unfinished_claims(self, *, limit: int = 100) -> list[TickClaim]:
        """Claims not finished yet, of every schedule, oldest ``claimed_at`` first (at most ``limit``).

        Instances read them to find claims whose holder died, and to know when the others' claims go
        stale.
        """

    @abstractmethod
    async def take_over(self, name: str, tick: float, *, owner: str, now: float, stale_before: float) -> bool:
        """Atomically take over the claim of ``tick`` from an instance that stopped renewing it.

        :returns: True for exactly one caller, and only while the claim is unfinished, its
            ``claimed_at <= stale_before``, and its schedule exists and is not paused. On True the claim is
            ``owner``'s: ``claimed_by = owner``, ``claimed_at = now``, ``attempts`` grows by one. False
            otherwise (renewed, finished, taken over by another caller, paused, gone).
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
        """Delete finished claims completed before ``before`` (epoch seconds), and unfinished claims whose
        lease (``claimed_at``) is older than ``before``: nobody took those over in all that time, so no
        instance defines their schedule any more. ``last_tick`` keeps the ticks settled.

        :returns: how many were deleted.
        """
