"""Fixtures shared by the core tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.jobs import JobCatalog
from lssm_jobs.queue import JobQueue, open_queue


@pytest.fixture(params=["memory", "sqlite"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., JobQueue]:
    """``make_queue(**options)``: a new queue on the memory backend, then (second run of the test) on a
    sqlite file in the test's directory; every queue of one test shares the same storage file. Test
    defaults: no event sinks, a catalog of its own, a 50 ms poll interval."""

    def make(**options: Any) -> JobQueue:
        settings: dict[str, Any] = {"sinks": [], "catalog": JobCatalog(), "poll_interval": 0.05, **options}
        if request.param == "memory":
            return open_queue("memory", **settings)
        return open_queue("sqlite", path=tmp_path / "jobs.db", **settings)

    return make


@pytest.fixture
def lssm_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``lssm_cli(*args)``: run ``lssm-jobs`` as a subprocess and return what it did."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lssm_jobs.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ,
        )

    return run
