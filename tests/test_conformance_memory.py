"""The conformance suite over the in-memory backend."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lssm_jobs.backends.base import QueueBackend
from lssm_jobs.backends.memory import MemoryBackend, MemoryStore
from lssm_jobs.testing import BackendConformance


@pytest.fixture
def lssm_jobs_backend_factory() -> Callable[[], QueueBackend]:
    store = MemoryStore()
    return lambda: MemoryBackend(store=store)


class TestMemoryBackend(BackendConformance):
    pass
