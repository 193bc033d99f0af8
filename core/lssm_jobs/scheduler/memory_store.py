"""The in-process scheduler store: for one process (tests, development, single-instance apps).

Scheduler instances share state when they share a :class:`MemorySchedulerData`; ``JobScheduler(queue)`` on
a memory queue picks the data belonging to that queue's :class:`~lssm_jobs.backends.memory.MemoryStore`,
so several schedulers on queues that share a memory store coordinate like processes on one database.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import attrs

from lssm_jobs.scheduler.stores import SchedulerStore, ScheduleState, TickClaim


class MemorySchedulerData:
    """Schedule rows and claims (schedule -> tick -> claim) held in memory; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[str, ScheduleState] = {}
        self.claims: dict[str, dict[float, TickClaim]] = {}


class MemorySchedulerStore(SchedulerStore):
    """A :class:`SchedulerStore` in this process's memory. Not durable: a restart forgets the last ticks."""

    name = "memory"

    def __init__(self, data: MemorySchedulerData | None = None) -> None:
        self.data = data if data is not None else MemorySchedulerData()

    async def ensure(self, name: str, *, now: float) -> ScheduleState:
        with self.data.lock:
            state = self.data.rows.get(name)
            if state is None:
                state = ScheduleState(name=name, last_tick=now, next_tick=None, paused=False, updated_at=now)
                self.data.rows[name] = state
            return state

    async def get(self, name: str) -> ScheduleState | None:
        with self.data.lock:
            return self.data.rows.get(name)

    async def states(self) -> list[ScheduleState]:
        with self.data.lock:
            return [self.data.rows[name] for name in sorted(self.data.rows)]

    async def claim(self, name: str, tick: float, *, owner: str, now: float, next_tick: float | None) -> bool:
        with self.data.lock:
            state = self.data.rows.get(name)
            if state is None or state.paused:
                return False
            if state.last_tick is not None and tick <= state.last_tick:
                return False
            claims = self.data.claims.setdefault(name, {})
            if tick in claims:
                return False
            claims[tick] = TickClaim(schedule=name, tick=tick, claimed_by=owner, claimed_at=now)
            self.data.rows[name] = attrs.evolve(state, last_tick=tick, next_tick=next_tick, updated_at=now)
            return True

    def _claim(self, name: str, tick: float) -> TickClaim | None:
        return self.data.claims.get(name, {}).get(tick)

    def _replace(self, claim: TickClaim, **changes: Any) -> None:
        self.data.claims[claim.schedule][claim.tick] = attrs.evolve(claim, **changes)

    async def renew(self, name: str, tick: float, *, owner: str, now: float) -> bool:
        with self.data.lock:
            claim = self._claim(name, tick)
            if claim is None or claim.finished or claim.claimed_by != owner:
                return False
            self._replace(claim, claimed_at=now)
            return True

    async def complete(self, name: str, tick: float, *, owner: str, now: float) -> bool:
        with self.data.lock:
            claim = self._claim(name, tick)
            if claim is None or claim.finished:
                return False
            self._replace(claim, completed_at=now)
            return claim.claimed_by == owner

    async def unfinished_claims(self, *, limit: int = 100) -> list[TickClaim]:
        with self.data.lock:
            unfinished = [
                claim
                for claims in self.data.claims.values()
                for claim in claims.values()
                if not claim.finished
            ]
        unfinished.sort(key=lambda claim: (claim.claimed_at, claim.schedule, claim.tick))
        return unfinished[:limit]

    async def take_over(self, name: str, tick: float, *, owner: str, now: float, stale_before: float) -> bool:
        with self.data.lock:
            state = self.data.rows.get(name)
            claim = self._claim(name, tick)
            if state is None or state.paused or claim is None or claim.finished:
                return False
            if claim.claimed_at > stale_before:
                return False
            self._replace(claim, claimed_by=owner, claimed_at=now, attempts=claim.attempts + 1)
            return True

    async def advance(self, name: str, tick: float, *, now: float, next_tick: float | None) -> None:
        with self.data.lock:
            state = self.data.rows.get(name)
            if state is None:
                return
            last = tick if state.last_tick is None else max(state.last_tick, tick)
            self.data.rows[name] = attrs.evolve(state, last_tick=last, next_tick=next_tick, updated_at=now)

    async def set_paused(self, name: str, paused: bool, *, now: float) -> ScheduleState | None:
        with self.data.lock:
            state = self.data.rows.get(name)
            if state is None:
                return None
            last = state.last_tick
            if not paused:
                last = now if last is None else max(last, now)
            state = attrs.evolve(state, paused=paused, last_tick=last, updated_at=now)
            self.data.rows[name] = state
            return state

    async def delete(self, name: str) -> bool:
        with self.data.lock:
            self.data.claims.pop(name, None)
            return self.data.rows.pop(name, None) is not None

    async def claims(self, name: str, *, limit: int = 100) -> list[TickClaim]:
        with self.data.lock:
            claims = sorted(self.data.claims.get(name, {}).values(), key=lambda claim: -claim.tick)
            return claims[:limit]

    async def prune_claims(self, *, before: float) -> int:
        pruned = 0
        with self.data.lock:
            for claims in self.data.claims.values():
                old = [
                    tick
                    for tick, claim in claims.items()
                    if (claim.claimed_at if claim.completed_at is None else claim.completed_at) < before
                ]
                for tick in old:
                    del claims[tick]
                pruned += len(old)
        return pruned


# One shared data object per memory queue store, so schedulers on queues sharing a MemoryStore coordinate.
_shared: weakref.WeakKeyDictionary[object, MemorySchedulerData] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def memory_store_factory(backend: Any = None, **options: Any) -> MemorySchedulerStore:
    """SchedulerStoreSpec factory: the store shared by every scheduler on ``backend``'s memory store."""
    if options:
        raise TypeError(f"unknown memory scheduler store options: {sorted(options)}")
    owner = getattr(backend, "store", None)
    if owner is None:
        return MemorySchedulerStore()
    with _shared_lock:
        data = _shared.get(owner)
        if data is None:
            data = _shared[owner] = MemorySchedulerData()
    return MemorySchedulerStore(data)
