"""Backoff arithmetic."""

from __future__ import annotations

import pytest
from lssm_jobs.jobs import JobOptions
from lssm_jobs.retry import backoff_delay_ms


def test_exponential_doubles_and_caps() -> None:
    options = JobOptions(backoff_ms=100, max_backoff_ms=1_000, jitter=0)
    assert [backoff_delay_ms(options, n) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]
    assert backoff_delay_ms(options, 10_000) == 1000  # huge exponents are capped, not computed


def test_linear_and_fixed() -> None:
    assert [
        backoff_delay_ms(JobOptions(backoff="linear", backoff_ms=50, jitter=0), n) for n in (1, 2, 3)
    ] == [
        50,
        100,
        150,
    ]
    assert {backoff_delay_ms(JobOptions(backoff="fixed", backoff_ms=70, jitter=0), n) for n in (1, 5, 9)} == {
        70
    }


def test_jitter_spreads_within_bounds() -> None:
    options = JobOptions(backoff_ms=1000, jitter=0.2, backoff="fixed")
    assert backoff_delay_ms(options, 1, rand=lambda: 0.0) == 800
    assert backoff_delay_ms(options, 1, rand=lambda: 1.0) == 1200
    assert backoff_delay_ms(options, 1, rand=lambda: 0.5) == 1000
    capped = JobOptions(backoff_ms=1000, max_backoff_ms=1000, jitter=0.5)
    assert backoff_delay_ms(capped, 3, rand=lambda: 1.0) == 1000


def test_retry_numbers_are_one_based() -> None:
    with pytest.raises(ValueError):
        backoff_delay_ms(JobOptions(), 0)
