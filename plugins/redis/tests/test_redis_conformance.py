"""The lssm-jobs backend conformance suite on a real redis-server and on a real 3-primary Redis Cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lssm_jobs.backends.base import QueueBackend
from lssm_jobs.testing import BackendConformance
from lssm_jobs_redis import RedisBackend


class TestRedisConformance(BackendConformance):
    """Uses ``lssm_jobs_backend_factory`` from conftest.py: one prefix per test on the session server."""


class TestRedisClusterConformance(BackendConformance):
    @pytest.fixture
    def lssm_jobs_backend_factory(
        self, redis_cluster: Any, unique_prefix: Callable[[], str]
    ) -> Callable[[], QueueBackend]:
        prefix = unique_prefix()
        return lambda: RedisBackend(url=redis_cluster.url, prefix=prefix)
