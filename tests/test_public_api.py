"""The public entry points are importable from ``lssm_jobs``, the heavy ones on first use."""

from __future__ import annotations

import importlib
import subprocess
import sys

import lssm_jobs
import pytest

ENTRY_POINTS = {
    "open_queue": "lssm_jobs.queue",
    "MemoryJobQueue": "lssm_jobs.queue",
    "JobQueue": "lssm_jobs.queue",
    "EnqueueRequest": "lssm_jobs.queue",
    "JobScheduler": "lssm_jobs.scheduler",
    "Handlers": "lssm_jobs.handlers",
    "open_blocking_queue": "lssm_jobs.blocking",
    "BlockingQueue": "lssm_jobs.blocking",
    "define_job_type": "lssm_jobs.jobs",
    "JobOptions": "lssm_jobs.jobs",
}


@pytest.mark.parametrize(("name", "module"), sorted(ENTRY_POINTS.items()))
def test_entry_point_is_the_one_of_its_module(name: str, module: str) -> None:
    assert name in lssm_jobs.__all__
    assert getattr(lssm_jobs, name) is getattr(importlib.import_module(module), name)


def test_every_exported_name_resolves() -> None:
    for name in lssm_jobs.__all__:
        assert getattr(lssm_jobs, name) is not None
    assert set(lssm_jobs.__all__) <= set(dir(lssm_jobs))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        lssm_jobs.nothing_here  # noqa: B018


def test_importing_the_package_does_not_load_the_queue() -> None:
    code = (
        "import sys, lssm_jobs; "
        "print(sorted(m for m in ('lssm_jobs.queue', 'lssm_jobs.scheduler', 'lssm_jobs.blocking') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
