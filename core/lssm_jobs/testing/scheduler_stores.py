"""The scheduler store contract tests, reusable by every :class:`SchedulerStore` (ours and plugins').

Subclass :class:`SchedulerStoreContract` in a test module and provide the fixture
``lssm_jobs_scheduler_store_factory``: a zero-argument callable returning a new, unopened store; stores made
by one factory share their storage (like scheduler processes on one database), and each factory is
isolated from other tests::

    import pytest
    from lssm_jobs.testing import SchedulerStoreContract
    from my_plugin import MyStore

    @pytest.fixture
    def lssm_jobs_scheduler_store_factory(my_server):
        prefix = my_server.fresh_prefix()
        return lambda: MyStore(url=my_server.url, prefix=prefix)

    class TestMyStore(SchedulerStoreContract):
        pass

Part of :mod:`lssm_jobs.testing`, beside the backend conformance suite: it needs pytest, and no runtime
module imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from lssm_jobs.scheduler.stores import SchedulerStore
from lssm_jobs.testing.helpers import run_async

StoreFactory = Callable[[], SchedulerStore]

T0 = 1_800_000_000.0


@asynccontextmanager
async def _opened(factory: StoreFactory, count: int = 1) -> AsyncIterator[list[SchedulerStore]]:
    stores = [factory() for _ in range(count)]
    opened: list[SchedulerStore] = []
    try:
        for store in stores:
            await store.open()
            opened.append(store)
        yield stores
    finally:
        for store in opened:
            await store.close()


class SchedulerStoreContract:
    """The contract every scheduler store meets. Requires fixture ``lssm_jobs_scheduler_store_factory``."""

    #: Concurrent claimers in the race test, and ticks they race for.
    race_instances: int = 4
    race_ticks: int = 25

    @pytest.fixture
    def store_factory(self, lssm_jobs_scheduler_store_factory: StoreFactory) -> StoreFactory:
        return lssm_jobs_scheduler_store_factory

    # -- rows -------------------------------------------------------------------------------------------------

    @run_async()
    async def test_ensure_creates_once_and_returns_the_existing_row(
        self, store_factory: StoreFactory
    ) -> None:
        async with _opened(store_factory, 2) as (first, second):
            assert await first.get("nightly") is None
            created = await first.ensure("nightly", now=T0)
            assert created.name == "nightly"
            assert created.last_tick == T0
            assert created.paused is False
            again = await second.ensure("nightly", now=T0 + 500)
            assert again.last_tick == T0, "ensure must not touch an existing row"
            assert await second.get("nightly") == again

    @run_async()
    async def test_concurrent_ensure_creates_one_row(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory, 3) as stores:
            states = await asyncio.gather(
                *(store.ensure("race", now=T0 + index) for index, store in enumerate(stores))
            )
            assert len({state.last_tick for state in states}) == 1
            assert [state.name for state in await stores[0].states()] == ["race"]

    @run_async()
    async def test_states_lists_every_schedule_by_name(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            for name in ("b-report", "a-cleanup", "c-sync"):
                await store.ensure(name, now=T0)
            assert [state.name for state in await store.states()] == ["a-cleanup", "b-report", "c-sync"]

    # -- claims -----------------------------------------------------------------------------------------------

    @run_async()
    async def test_a_tick_is_claimed_once(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory, 2) as (first, second):
            await first.ensure("s", now=T0)
            assert await first.claim("s", T0 + 60, owner="a", now=T0 + 60, next_tick=T0 + 120)
            assert not await first.claim("s", T0 + 60, owner="a", now=T0 + 60, next_tick=T0 + 120)
            assert not await second.claim("s", T0 + 60, owner="b", now=T0 + 61, next_tick=T0 + 120)
            state = await second.get("s")
            assert state is not None
            assert state.last_tick == T0 + 60
            assert state.next_tick == T0 + 120
            claims = await second.claims("s")
            assert [(claim.tick, claim.claimed_by, claim.claimed_at) for claim in claims] == [
                (T0 + 60, "a", T0 + 60)
            ]

    @run_async()
    async def test_settled_ticks_cannot_be_claimed(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            assert not await store.claim("s", T0, owner="a", now=T0, next_tick=None), "created at T0: settled"
            assert not await store.claim("s", T0 - 60, owner="a", now=T0, next_tick=None)
            assert await store.claim("s", T0 + 120, owner="a", now=T0 + 120, next_tick=None)
            assert not await store.claim("s", T0 + 60, owner="b", now=T0 + 121, next_tick=None), (
                "a tick older than the last claimed one must stay settled"
            )

    @run_async()
    async def test_claims_need_an_existing_unpaused_schedule(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            assert not await store.claim("ghost", T0 + 1, owner="a", now=T0 + 1, next_tick=None)
            await store.ensure("s", now=T0)
            paused = await store.set_paused("s", True, now=T0 + 5)
            assert paused is not None and paused.paused
            assert not await store.claim("s", T0 + 10, owner="a", now=T0 + 10, next_tick=None)

    @run_async()
    async def test_fractional_ticks_round_trip_exactly(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            tick = T0 + 0.123456
            assert await store.claim("s", tick, owner="a", now=tick, next_tick=tick + 0.25)
            assert not await store.claim("s", tick, owner="b", now=tick, next_tick=None)
            state = await store.get("s")
            assert state is not None and state.last_tick == tick and state.next_tick == tick + 0.25
            assert (await store.claims("s"))[0].tick == tick

    @run_async()
    async def test_racing_instances_claim_each_tick_exactly_once(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory, self.race_instances) as stores:
            await stores[0].ensure("race", now=T0)
            ticks = [T0 + second for second in range(1, self.race_ticks + 1)]

            async def claimer(index: int, store: SchedulerStore) -> list[float]:
                won = []
                for tick in ticks:
                    if await store.claim("race", tick, owner=f"i{index}", now=tick, next_tick=tick + 1):
                        won.append(tick)
                return won

            results = await asyncio.gather(*(claimer(index, store) for index, store in enumerate(stores)))
            fired = sorted(tick for won in results for tick in won)
            assert len(fired) == len(set(fired)), "a tick was claimed twice"
            claims = await stores[0].claims("race", limit=self.race_ticks * 2)
            assert sorted(claim.tick for claim in claims) == fired
            assert fired[-1] == ticks[-1]

    # -- two-phase firing: complete, renew, take over ------------------------------------------------------

    @run_async()
    async def test_a_claim_is_unfinished_until_completed(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory, 2) as (first, second):
            await first.ensure("s", now=T0)
            assert await first.claim("s", T0 + 60, owner="a", now=T0 + 60, next_tick=None)
            (claim,) = await second.claims("s")
            assert (claim.claimed_by, claim.claimed_at, claim.completed_at, claim.attempts) == (
                "a",
                T0 + 60,
                None,
                1,
            )
            assert not claim.finished
            assert [(c.schedule, c.tick) for c in await second.unfinished_claims()] == [("s", T0 + 60)]
            assert await second.complete("s", T0 + 60, owner="a", now=T0 + 61)
            (claim,) = await first.claims("s")
            assert claim.completed_at == T0 + 61 and claim.finished and claim.claimed_by == "a"
            assert await first.unfinished_claims() == []
            assert not await first.complete("s", T0 + 60, owner="a", now=T0 + 62), "already finished"
            assert (await first.claims("s"))[0].completed_at == T0 + 61, "the first completion stays"
            assert not await first.complete("s", T0 + 120, owner="a", now=T0 + 62), "no such claim"
            assert not await first.complete("ghost", T0 + 60, owner="a", now=T0 + 62)

    @run_async()
    async def test_completing_a_claim_held_by_another_instance(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            assert await store.claim("s", T0 + 60, owner="a", now=T0 + 60, next_tick=None)
            # "b" also fired the tick (it took the claim over from a slow "a"): it is finished anyway
            assert not await store.complete("s", T0 + 60, owner="b", now=T0 + 61)
            (claim,) = await store.claims("s")
            assert claim.finished and claim.claimed_by == "a"
            assert await store.unfinished_claims() == []

    @run_async()
    async def test_renew_extends_only_the_holders_unfinished_claim(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            assert await store.claim("s", T0 + 60, owner="a", now=T0 + 60, next_tick=None)
            assert await store.renew("s", T0 + 60, owner="a", now=T0 + 80)
            assert (await store.claims("s"))[0].claimed_at == T0 + 80
            assert not await store.renew("s", T0 + 60, owner="b", now=T0 + 90), "not b's claim"
            assert not await store.renew("s", T0 + 120, owner="a", now=T0 + 90), "no such claim"
            assert (await store.claims("s"))[0].claimed_at == T0 + 80
            assert await store.complete("s", T0 + 60, owner="a", now=T0 + 95)
            assert not await store.renew("s", T0 + 60, owner="a", now=T0 + 100), "finished"
            assert (await store.claims("s"))[0].claimed_at == T0 + 80

    @run_async()
    async def test_unfinished_claims_of_every_schedule_oldest_lease_first(
        self, store_factory: StoreFactory
    ) -> None:
        async with _opened(store_factory) as (store,):
            for name in ("a", "b"):
                await store.ensure(name, now=T0)
            assert await store.claim("b", T0 + 10, owner="x", now=T0 + 10, next_tick=None)
            assert await store.claim("a", T0 + 20, owner="y", now=T0 + 20, next_tick=None)
            assert await store.claim("a", T0 + 30, owner="x", now=T0 + 30, next_tick=None)
            assert await store.claim("b", T0 + 40, owner="y", now=T0 + 40, next_tick=None)
            assert await store.complete("a", T0 + 30, owner="x", now=T0 + 31)
            assert await store.renew("b", T0 + 10, owner="x", now=T0 + 50)
            unfinished = await store.unfinished_claims()
            assert [(c.schedule, c.tick, c.claimed_at) for c in unfinished] == [
                ("a", T0 + 20, T0 + 20),
                ("b", T0 + 40, T0 + 40),
                ("b", T0 + 10, T0 + 50),
            ]
            assert [(c.schedule, c.tick) for c in await store.unfinished_claims(limit=1)] == [("a", T0 + 20)]

    @run_async()
    async def test_a_stale_claim_is_taken_over_once(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory, 2) as (first, second):
            await first.ensure("s", now=T0)
            assert await first.claim("s", T0 + 60, owner="dead", now=T0 + 60, next_tick=None)
            assert not await second.take_over("s", T0 + 60, owner="b", now=T0 + 70, stale_before=T0 + 59), (
                "the lease is not over yet"
            )
            assert await second.take_over("s", T0 + 60, owner="b", now=T0 + 120, stale_before=T0 + 60)
            assert not await first.take_over("s", T0 + 60, owner="c", now=T0 + 121, stale_before=T0 + 61), (
                "the new holder's lease started at its take-over"
            )
            (claim,) = await first.claims("s")
            assert (claim.claimed_by, claim.claimed_at, claim.attempts, claim.completed_at) == (
                "b",
                T0 + 120,
                2,
                None,
            )
            assert not await first.renew("s", T0 + 60, owner="dead", now=T0 + 122), "no longer dead's"
            assert await second.renew("s", T0 + 60, owner="b", now=T0 + 130)
            assert await second.complete("s", T0 + 60, owner="b", now=T0 + 131)
            assert not await first.take_over("s", T0 + 60, owner="c", now=T0 + 999, stale_before=T0 + 998), (
                "finished claims are never taken over"
            )
            assert not await first.take_over("s", T0 + 3600, owner="c", now=T0 + 999, stale_before=T0 + 998)
            assert not await first.take_over("ghost", T0, owner="c", now=T0 + 999, stale_before=T0 + 998)

    @run_async()
    async def test_a_paused_schedules_claims_are_not_taken_over(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            assert await store.claim("s", T0 + 60, owner="dead", now=T0 + 60, next_tick=None)
            await store.set_paused("s", True, now=T0 + 61)
            assert not await store.take_over("s", T0 + 60, owner="b", now=T0 + 200, stale_before=T0 + 100)
            await store.set_paused("s", False, now=T0 + 300)
            assert await store.take_over("s", T0 + 60, owner="b", now=T0 + 301, stale_before=T0 + 100)

    @run_async()
    async def test_racing_instances_take_over_a_claim_once(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory, self.race_instances) as stores:
            await stores[0].ensure("race", now=T0)
            ticks = [T0 + second for second in range(1, self.race_ticks + 1)]
            for tick in ticks:
                assert await stores[0].claim("race", tick, owner="dead", now=tick, next_tick=None)
            now = ticks[-1] + 60

            async def taker(index: int, store: SchedulerStore) -> list[float]:
                won = []
                for tick in ticks:
                    owner = f"i{index}"
                    if await store.take_over("race", tick, owner=owner, now=now, stale_before=now - 30):
                        won.append(tick)
                return won

            results = await asyncio.gather(*(taker(index, store) for index, store in enumerate(stores)))
            taken = sorted(tick for won in results for tick in won)
            assert taken == ticks, "every stale claim is taken over by exactly one instance"
            claims = await stores[0].claims("race", limit=self.race_ticks * 2)
            assert {claim.attempts for claim in claims} == {2}
            holders = {claim.tick: claim.claimed_by for claim in claims}
            for index, won in enumerate(results):
                assert all(holders[tick] == f"i{index}" for tick in won)

    # -- advance, pause, delete, prune ----------------------------------------------------------------------

    @run_async()
    async def test_advance_only_moves_forward(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            await store.advance("s", T0 + 300, now=T0 + 301, next_tick=T0 + 360)
            state = await store.get("s")
            assert state is not None and state.last_tick == T0 + 300 and state.next_tick == T0 + 360
            await store.advance("s", T0 + 100, now=T0 + 302, next_tick=T0 + 360)
            state = await store.get("s")
            assert state is not None and state.last_tick == T0 + 300
            assert not await store.claim("s", T0 + 240, owner="a", now=T0 + 303, next_tick=None)
            await store.advance("ghost", T0, now=T0, next_tick=None)  # no error, no row
            assert await store.get("ghost") is None

    @run_async()
    async def test_pause_is_shared_and_resume_settles_the_paused_time(
        self, store_factory: StoreFactory
    ) -> None:
        async with _opened(store_factory, 2) as (first, second):
            await first.ensure("s", now=T0)
            await first.set_paused("s", True, now=T0 + 10)
            state = await second.get("s")
            assert state is not None and state.paused
            resumed = await second.set_paused("s", False, now=T0 + 600)
            assert resumed is not None and not resumed.paused
            assert resumed.last_tick == T0 + 600, "ticks that passed while paused are settled on resume"
            assert not await first.claim("s", T0 + 300, owner="a", now=T0 + 601, next_tick=None)
            assert await first.claim("s", T0 + 660, owner="a", now=T0 + 660, next_tick=None)
            assert await first.set_paused("ghost", True, now=T0) is None

    @run_async()
    async def test_delete_forgets_state_and_claims(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            assert await store.claim("s", T0 + 60, owner="a", now=T0 + 60, next_tick=None)
            assert await store.delete("s")
            assert not await store.delete("s")
            assert await store.get("s") is None
            assert await store.claims("s") == []
            assert await store.unfinished_claims() == []
            assert not await store.complete("s", T0 + 60, owner="a", now=T0 + 61)
            fresh = await store.ensure("s", now=T0 + 1000)
            assert fresh.last_tick == T0 + 1000

    @run_async()
    async def test_claims_are_listed_newest_first_and_pruned_by_age(
        self, store_factory: StoreFactory
    ) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            for minute in range(1, 6):
                tick = T0 + 60 * minute
                assert await store.claim("s", tick, owner="a", now=tick, next_tick=None)
            assert [claim.tick for claim in await store.claims("s", limit=2)] == [T0 + 300, T0 + 240]
            assert await store.prune_claims(before=T0 + 181) == 3
            assert [claim.tick for claim in await store.claims("s")] == [T0 + 300, T0 + 240]
            assert not await store.claim("s", T0 + 60, owner="b", now=T0 + 400, next_tick=None), (
                "pruning claims must not re-open their ticks"
            )

    @run_async()
    async def test_pruning_goes_by_completion_and_by_lease(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            for minute in range(1, 5):
                tick = T0 + 60 * minute
                assert await store.claim("s", tick, owner="a", now=tick, next_tick=None)
            assert await store.complete("s", T0 + 60, owner="a", now=T0 + 61)  # finished long ago
            assert await store.complete("s", T0 + 120, owner="a", now=T0 + 1000)  # finished lately
            assert await store.renew("s", T0 + 180, owner="a", now=T0 + 1000)  # still firing
            # T0 + 240: unfinished, its lease long over, and nobody took it over: abandoned
            assert await store.prune_claims(before=T0 + 500) == 2
            assert sorted(claim.tick for claim in await store.claims("s")) == [T0 + 120, T0 + 180]
            assert [claim.tick for claim in await store.unfinished_claims()] == [T0 + 180]

    @run_async()
    async def test_reopening_keeps_state(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            assert await store.claim("s", T0 + 60, owner="a", now=T0 + 60, next_tick=T0 + 120)
            assert await store.claim("s", T0 + 120, owner="a", now=T0 + 120, next_tick=None)
            assert await store.complete("s", T0 + 120, owner="a", now=T0 + 121)
        async with _opened(store_factory) as (again,):
            state = await again.get("s")
            assert state is not None and state.last_tick == T0 + 120
            assert not await again.claim("s", T0 + 60, owner="b", now=T0 + 61, next_tick=None)
            assert [(c.tick, c.completed_at) for c in await again.claims("s")] == [
                (T0 + 120, T0 + 121),
                (T0 + 60, None),
            ]
            assert [claim.tick for claim in await again.unfinished_claims()] == [T0 + 60]
