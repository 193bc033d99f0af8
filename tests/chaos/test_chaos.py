"""The chaos suite: thousands of jobs through producer and worker processes while workers are killed and
the service is restarted and filled up; every accepted job must end completed or dead-lettered.

A short run per backend is part of ``nox -s tests``; ``nox -s chaos`` runs the long one
(``LSSM_CHAOS_PROFILE=full``). How a run works and how to add a backend: ``chaos_harness``'s docstring.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
from chaos_harness import (
    ChaosReport,
    ChaosRun,
    ChaosSettings,
    ChaosTarget,
    RedisClusterTarget,
    RedisTarget,
    SqliteTarget,
)

SETTINGS = ChaosSettings.from_environment()
# pytest-timeout's bound, raised to fit the profile's run (producers, drain, service start-up).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(SETTINGS.seconds * 2 + SETTINGS.drain_timeout + 120)]


def _needs_redis() -> None:
    if importlib.util.find_spec("lssm_jobs_redis") is None:
        pytest.skip("the Redis plugin (lssm-jobs-redis) is not installed")
    from lssm_jobs_redis.testing import CLI_BINARY, SERVER_BINARY

    if SERVER_BINARY is None or CLI_BINARY is None:
        pytest.skip("redis-server / redis-cli not found (install redis-server and redis-tools)")


def _sqlite(directory: Path) -> ChaosTarget:
    return SqliteTarget(directory)


def _redis(directory: Path) -> ChaosTarget:
    _needs_redis()
    return RedisTarget(directory)


def _redis_cluster(directory: Path) -> ChaosTarget:
    _needs_redis()
    return RedisClusterTarget(directory)


TARGETS: dict[str, Callable[[Path], ChaosTarget]] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "redis-cluster": _redis_cluster,
}


@pytest.mark.parametrize("backend", list(TARGETS))
def test_no_accepted_job_is_lost_under_chaos(
    backend: str, tmp_path: Path, chaos_reports: list[ChaosReport]
) -> None:
    target = TARGETS[backend](tmp_path)
    try:
        report = ChaosRun(target, SETTINGS, tmp_path / "run").run()
    finally:
        target.close()
    chaos_reports.append(report)
    assert report.ok, f"logs in {tmp_path / 'run'}\n{report.render()}"
