"""The job ledger contract suite over the Redis ledger, on a real redis-server (and a Redis Cluster)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from lssm_jobs.ledger import JobLedger, open_ledger
from lssm_jobs.testing import LedgerConformance
from lssm_jobs_redis.ledger import RedisLedger


class TestRedisLedger(LedgerConformance):
    @pytest.fixture
    def lssm_jobs_ledger_factory(self, redis_server: Any) -> Callable[[], JobLedger]:
        prefix = f"l{uuid.uuid4().hex[:12]}:"
        return lambda: RedisLedger(url=redis_server.url, prefix=prefix)


class TestRedisClusterLedger(LedgerConformance):
    @pytest.fixture
    def lssm_jobs_ledger_factory(self, redis_cluster: Any) -> Callable[[], JobLedger]:
        prefix = f"l{uuid.uuid4().hex[:12]}:"
        return lambda: RedisLedger(url=redis_cluster.url, prefix=prefix)


def test_the_redis_ledger_is_registered(redis_server: Any) -> None:
    ledger = open_ledger("redis", url=redis_server.url, prefix="x:")
    assert isinstance(ledger, RedisLedger) and ledger.base == "{x}:"
