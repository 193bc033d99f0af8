"""The result store contract (lssm_jobs.testing.ResultStoreConformance) on a real redis-server and on the
cluster, and the Redis store being the default for Redis queues (sharing their prefix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lssm_jobs.jobs import JobCatalog, define_job_type
from lssm_jobs.queue import open_queue
from lssm_jobs.results import ResultStore
from lssm_jobs.testing import ResultStoreConformance, run_async
from lssm_jobs_redis import RedisResultStore


class TestRedisResultStore(ResultStoreConformance):
    @pytest.fixture
    def lssm_jobs_result_store_factory(
        self, redis_server: Any, unique_prefix: Callable[[], str]
    ) -> Callable[[], ResultStore]:
        prefix = unique_prefix()
        return lambda: RedisResultStore(url=redis_server.url, prefix=prefix)


class TestRedisClusterResultStore(ResultStoreConformance):
    @pytest.fixture
    def lssm_jobs_result_store_factory(
        self, redis_cluster: Any, unique_prefix: Callable[[], str]
    ) -> Callable[[], ResultStore]:
        prefix = unique_prefix()
        return lambda: RedisResultStore(url=redis_cluster.url, prefix=prefix, cluster=True)


@run_async()
async def test_a_redis_queue_keeps_results_under_its_prefix(
    redis_server: Any, unique_prefix: Callable[[], str]
) -> None:
    prefix = unique_prefix()
    catalog = JobCatalog()
    doubled = define_job_type(type="redis.doubled", result=int, catalog=catalog)
    queue = open_queue(
        "redis", url=redis_server.url, prefix=prefix, sinks=[], catalog=catalog, poll_interval=0.05
    )
    assert isinstance(queue.result_store, RedisResultStore)
    assert queue.result_store.keys == queue.backend.keys
    queue.register(doubled, lambda job: 2 * job.payload["n"])
    async with queue:
        await queue.start()
        job = await queue.enqueue(doubled, {"n": 21})
        assert await job.wait(timeout=10) == 42
        keys = {key async for key in queue.backend.client.scan_iter(match=queue.backend.keys.pattern)}
        assert f"{queue.backend.keys.base}r:{job.id}".encode() in keys
        ttl = await queue.backend.client.pttl(f"{queue.backend.keys.base}r:{job.id}")
        assert 86_000_000 < ttl <= 86_400_000  # the default retention, 24 h
