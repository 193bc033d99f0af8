"""The conformance suite over the built-in backends configured to keep no completed jobs
(``completed_retention=0``): ``get`` of a completed job is then None, as the contract allows; and the old
name of the memory backend's count limit still works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lssm_jobs.backends.base import QueueBackend
from lssm_jobs.backends.memory import MemoryBackend, MemoryStore
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.testing import BackendConformance


class TestMemoryWithoutRetention(BackendConformance):
    completed_retained = False

    @pytest.fixture
    def lssm_jobs_backend_factory(self) -> Callable[[], QueueBackend]:
        store = MemoryStore(completed_retention=0)
        return lambda: MemoryBackend(store=store)


class TestSqliteWithoutRetention(BackendConformance):
    completed_retained = False

    @pytest.fixture
    def lssm_jobs_backend_factory(self, tmp_path: Path) -> Callable[[], QueueBackend]:
        return lambda: SqliteBackend(path=tmp_path / "jobs.db", completed_retention=0)


def test_memory_count_limit_has_one_name_and_the_old_one_warns() -> None:
    assert MemoryStore(completed_max=5).completed_max == 5
    with pytest.warns(DeprecationWarning, match="completed_max"):
        store = MemoryStore(completed_limit=7)
    assert store.completed_max == 7
