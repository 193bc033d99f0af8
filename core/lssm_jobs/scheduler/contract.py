"""The scheduler store contract tests, reusable by every :class:`SchedulerStore` (ours and plugins').

Subclass :class:`SchedulerStoreContract` in a test module and provide the fixture
``lssm_jobs_scheduler_store_factory``: a zero-argument callable returning a new, unopened store; stores made
by one factory share their storage (like scheduler processes on one database), and each factory is
isolated from other tests::

    import pytest
    from lssm_jobs.scheduler.contract import SchedulerStoreContract
    from my_plugin import MyStore

    @pytest.fixture
    def lssm_jobs_scheduler_store_factory(my_server):
        prefix = my_server.fresh_prefix()
        return lambda: MyStore(url=my_server.url, prefix=prefix)

    class TestMyStore(SchedulerStoreContract):
        pass

Requires pytest (this module is only imported by test suites).
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
    async def test_reopening_keeps_state(self, store_factory: StoreFactory) -> None:
        async with _opened(store_factory) as (store,):
            await store.ensure("s", now=T0)
            assert await store.claim("s", T0 + 60, owner="a", now=T0 + 60, next_tick=T0 + 120)
        async with _opened(store_factory) as (again,):
            state = await again.get("s")
            assert state is not None and state.last_tick == T0 + 60
            assert not await again.claim("s", T0 + 60, owner="b", now=T0 + 61, next_tick=None)
