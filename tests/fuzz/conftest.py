"""Fixtures of the fuzz suite: hypothesis profiles and the backends' storage.

Profiles (``LSSM_FUZZ_PROFILE``): ``ci``, the default, runs a fixed, derandomized budget (the same examples
on every run, so CI is deterministic and quick); ``full`` runs ten times more examples with fresh
randomness (``nox -s chaos`` uses it). ``storage`` gives each test a factory of isolated spaces on the
backend it is parametrized with (see ``fuzz_storage``); Redis runs on a redis-server of this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_storage import MemorySpace, RedisSpace, Space, SqliteSpace

_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
# Each example runs a real worker on a real backend, and a failing one waits for its deadline: CI reports
# the failing example as generated instead of spending minutes shrinking it.
settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=_CHECKS,
)
settings.register_profile("full", max_examples=300, deadline=None, suppress_health_check=_CHECKS)
settings.load_profile(os.environ.get("LSSM_FUZZ_PROFILE", "ci"))

STORAGES = ("memory", "sqlite", "redis")


@pytest.fixture(scope="module")
def fuzz_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from lssm_jobs_redis.testing import SERVER_BINARY, RedisServer
    except ImportError:
        pytest.skip("the Redis plugin (lssm-jobs-redis) is not installed")
    if SERVER_BINARY is None:
        pytest.skip("redis-server not found (install redis-server, or set LSSM_JOBS_REDIS_SERVER)")
    server = RedisServer(tmp_path_factory.mktemp("fuzz-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Space]:
    """Makes a fresh, isolated space of the parametrized backend on each call (one per example)."""
    counter = iter(range(1_000_000))
    if request.param == "memory":
        return MemorySpace
    if request.param == "sqlite":
        return lambda: SqliteSpace(tmp_path / f"fuzz-{next(counter)}.db")
    server = request.getfixturevalue("fuzz_redis_server")
    return lambda: RedisSpace(server)
