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


class TestRedisWithoutRetentionConformance(BackendConformance):
    """Completed jobs deleted at once (``completed_retention=0``): ``get`` of a completed job is None."""

    completed_retained = False

    @pytest.fixture
    def lssm_jobs_backend_factory(
        self, redis_server: Any, unique_prefix: Callable[[], str]
    ) -> Callable[[], QueueBackend]:
        prefix = unique_prefix()
        return lambda: RedisBackend(url=redis_server.url, prefix=prefix, completed_retention=0)


def test_completed_retention_is_in_seconds_and_the_old_name_warns() -> None:
    assert RedisBackend(completed_retention=1.5).options.completed_retention_ms == 1500
    with pytest.warns(DeprecationWarning, match="completed_retention"):
        backend = RedisBackend(completed_ttl_ms=2500)
    assert backend.options.completed_retention == 2.5
