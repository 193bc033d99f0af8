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


class TestRedisScriptsConformance(BackendConformance):
    """The same, with the code sent as ``EVALSHA`` scripts (as on Redis 6.2, or for users without the
    ``FUNCTION`` permission; each script carries the part of the shared prelude it uses), over the
    pipelined channel and with every call through redis-py (``pipelined=False``)."""

    @pytest.fixture(params=[True, False], ids=["pipelined", "plain-client"])
    def lssm_jobs_backend_factory(
        self, request: pytest.FixtureRequest, redis_server: Any, unique_prefix: Callable[[], str]
    ) -> Callable[[], QueueBackend]:
        prefix = unique_prefix()
        return lambda: RedisBackend(
            url=redis_server.url, prefix=prefix, functions=False, pipelined=request.param
        )
