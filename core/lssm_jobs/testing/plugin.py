"""The pytest plugin of lssm-jobs (entry point ``pytest11: lssm_jobs``).

It is inert until a test asks for its fixtures. ``lssm_jobs_backend_factory`` must be overridden by the
backend's own conftest; the default explains how.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lssm_jobs.backends.base import QueueBackend


@pytest.fixture
def lssm_jobs_backend_factory() -> Callable[[], QueueBackend]:
    """Override me: return a zero-argument callable that makes a new, unopened backend; instances made by one
    factory must share storage, and each factory must be isolated from other tests."""
    pytest.fail(
        "the lssm-jobs conformance suite needs a fixture named 'lssm_jobs_backend_factory' in your conftest.py "
        "returning a zero-argument callable that creates your backend (see lssm_jobs.testing's docstring)"
    )
