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
"""

from __future__ import annotations

from lssm_jobs.testing.conformance import BackendConformance
from lssm_jobs.testing.helpers import opened, run_async, wait_until
from lssm_jobs.testing.ledger import LedgerConformance

__all__ = ["BackendConformance", "LedgerConformance", "opened", "run_async", "wait_until"]
