"""The scheduler store contract (lssm_jobs.testing.SchedulerStoreContract) on a real redis-server and on
the cluster, plus the Redis store being the default for schedulers of Redis queues."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lssm_jobs.jobs import JobCatalog
from lssm_jobs.queue import open_queue
from lssm_jobs.scheduler.stores import SchedulerStore
from lssm_jobs.testing import SchedulerStoreContract, run_async
from lssm_jobs_redis import RedisSchedulerStore


class TestRedisSchedulerStore(SchedulerStoreContract):
    @pytest.fixture
    def lssm_jobs_scheduler_store_factory(
        self, redis_server: Any, unique_prefix: Callable[[], str]
    ) -> Callable[[], SchedulerStore]:
        prefix = unique_prefix()
        return lambda: RedisSchedulerStore(url=redis_server.url, prefix=prefix)


class TestRedisClusterSchedulerStore(SchedulerStoreContract):
    @pytest.fixture
    def lssm_jobs_scheduler_store_factory(
        self, redis_cluster: Any, unique_prefix: Callable[[], str]
    ) -> Callable[[], SchedulerStore]:
        prefix = unique_prefix()
        return lambda: RedisSchedulerStore(url=redis_cluster.url, prefix=prefix)


@run_async()
async def test_a_redis_queue_gets_the_redis_store_sharing_its_prefix(
    redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    from lssm_jobs.plugins import get_plugins

    prefix = unique_prefix()
    queue = open_queue("redis", url=redis_server.url, prefix=prefix, sinks=[], catalog=JobCatalog())
    spec = get_plugins().scheduler_store("redis")
    assert spec.backend == "redis"
    store = spec.factory(backend=queue.backend)
    assert isinstance(store, RedisSchedulerStore) and store.keys == queue.backend.keys
    await store.open()
    try:
        state = await store.ensure("nightly", now=1_800_000_000.25)
        assert state.last_tick == 1_800_000_000.25
    finally:
        await store.close()
        await queue.close()
