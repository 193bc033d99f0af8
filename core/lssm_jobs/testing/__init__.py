"""Testing support: the backend conformance suite and helpers, shipped so third-party backends can prove
they behave like the built-in ones.

Enable it in a backend's test suite::

    # conftest.py
    import pytest
    from my_backend import MyBackend

    @pytest.fixture
    def lssm_jobs_backend_factory(tmp_path):
        return lambda: MyBackend(path=tmp_path / "jobs")   # instances from one factory share storage

    # test_conformance.py
    from lssm_jobs.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        pass

A scheduler store proves itself the same way with :class:`SchedulerStoreContract` and a fixture
``lssm_jobs_scheduler_store_factory`` (see :mod:`lssm_jobs.testing.scheduler_stores`), a result store with
:class:`ResultStoreConformance` and ``lssm_jobs_result_store_factory`` (see
:mod:`lssm_jobs.testing.result_stores`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lssm_jobs._lazy import lazy_exports
from lssm_jobs.testing.helpers import opened, run_async, wait_until

if TYPE_CHECKING:
    from lssm_jobs.testing.conformance import BackendConformance
    from lssm_jobs.testing.ledger import LedgerConformance
    from lssm_jobs.testing.result_stores import ResultStoreConformance
    from lssm_jobs.testing.scheduler_stores import SchedulerStoreContract

# The suites need pytest; imported on first use, so the helpers and the process tools
# (lssm_jobs.testing.processes, used by the benchmarks) work where pytest is not installed.
_LAZY = {
    "BackendConformance": "lssm_jobs.testing.conformance",
    "LedgerConformance": "lssm_jobs.testing.ledger",
    "ResultStoreConformance": "lssm_jobs.testing.result_stores",
    "SchedulerStoreContract": "lssm_jobs.testing.scheduler_stores",
}

__all__ = [
    "BackendConformance",
    "LedgerConformance",
    "ResultStoreConformance",
    "SchedulerStoreContract",
    "opened",
    "run_async",
    "wait_until",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
