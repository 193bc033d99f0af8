"""Fixtures of the Cloud Tasks plugin's tests: ``gcloud-tasks-emulator`` on 127.0.0.1 (through the loopback
wrapper ``tasks_emulator.py``, in its own virtualenv), test OIDC keys served on a local certificate URL, and
backends on both.

The emulator's virtualenv is made by ``nox -s tests`` (``.nox/gcloud-tasks-emulator``); set
``LSSM_JOBS_TASKS_EMULATOR_PYTHON`` to use another interpreter that has ``gcloud-tasks-emulator==0.6.2``.
Without one the tests that need it are skipped, saying why (and fail under ``CI``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.backends.base import QueueBackend
from lssm_jobs_gcp_tasks import CloudTasksBackend

from .emulator_support import (
    EMULATOR_ENV,
    LOCATION,
    PROJECT,
    SERVICE_ACCOUNT,
    OidcKeys,
    TasksEmulator,
    emulator_python,
    free_port,
)


@pytest.fixture(scope="session")
def oidc_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcKeys]:
    keys = OidcKeys(tmp_path_factory.mktemp("oidc"))
    yield keys
    keys.close()


@pytest.fixture(scope="session")
def tasks_emulator(oidc_keys: OidcKeys) -> Iterator[TasksEmulator]:
    python = emulator_python()
    if python is None:
        reason = (
            "gcloud-tasks-emulator not found: run `nox -s tests` (it makes .nox/gcloud-tasks-emulator) or set "
            f"{EMULATOR_ENV} to a Python that has gcloud-tasks-emulator==0.6.2"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    emulator = TasksEmulator(python, oidc_keys)
    yield emulator
    emulator.stop()


@pytest.fixture
def queue_prefix(tasks_emulator: TasksEmulator) -> Iterator[str]:
    """Cloud Tasks queue ids of this test alone (its queues are deleted afterwards)."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    yield prefix
    tasks_emulator.delete_queues(prefix)


@pytest.fixture
def gcp_tasks_factory(
    tasks_emulator: TasksEmulator, oidc_keys: OidcKeys, queue_prefix: str, tmp_path: Path
) -> Callable[..., CloudTasksBackend]:
    """Makes unopened backends of this test: the emulator, its own queues, one worker port and URL, a sqlite
    ledger, OIDC tokens verified against the test keys."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/tasks"

    def make(**options: Any) -> CloudTasksBackend:
        settings: dict[str, Any] = {
            "project": PROJECT,
            "location": LOCATION,
            "url": url,
            "port": port,
            "ledger": "sqlite",
            "ledger_options": {"path": str(tmp_path / "ledger.db")},
            "queue_prefix": queue_prefix,
            "create_queues": True,
            "api_endpoint": tasks_emulator.address,
            "insecure": True,
            "oidc_service_account": SERVICE_ACCOUNT,
            "oidc_certs_url": oidc_keys.url,
        }
        settings.update(options)
        return CloudTasksBackend(**settings)

    return make


@pytest.fixture
def lssm_jobs_backend_factory(
    gcp_tasks_factory: Callable[..., CloudTasksBackend],
) -> Callable[[], QueueBackend]:
    return lambda: gcp_tasks_factory()
