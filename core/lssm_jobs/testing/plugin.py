"""The pytest plugin of lssm-jobs (entry point ``pytest11: lssm_jobs``).

It is inert until a test asks for its fixtures. ``lssm_jobs_backend_factory`` must be overridden by the
backend's own conftest; the default explains how.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lssm_jobs.backends.base import QueueBackend
from lssm_jobs.ledger.base import JobLedger


@pytest.fixture
def lssm_jobs_backend_factory() -> Callable[[], QueueBackend]:
    """Override me: return a zero-argument callable that makes a new, unopened backend; instances made by one
    factory must share storage, and each factory must be isolated from other tests."""
    pytest.fail(
        "the lssm-jobs conformance suite needs a fixture named 'lssm_jobs_backend_factory' in your conftest.py "
        "returning a zero-argument callable that creates your backend (see lssm_jobs.testing's docstring)"
    )


@pytest.fixture
def lssm_jobs_ledger_factory() -> Callable[[], JobLedger]:
    """Override me for :class:`lssm_jobs.testing.LedgerConformance`: a zero-argument callable making new,
    unopened ledgers that share one storage, isolated from other tests."""
    pytest.fail(
        "the lssm-jobs ledger suite needs a fixture named 'lssm_jobs_ledger_factory' in your conftest.py "
        "returning a zero-argument callable that creates your ledger (see lssm_jobs.testing.ledger)"
    )
