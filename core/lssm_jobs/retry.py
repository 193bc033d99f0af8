"""Backoff between retries: exponential, linear or fixed, capped, with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable

from lssm_jobs.jobs import JobOptions


def backoff_delay_ms(
    options: JobOptions, retry_number: int, rand: Callable[[], float] = random.random
) -> int:
    """Delay before retry ``retry_number`` (1 for the first retry).

    Jitter spreads the delay uniformly over ``[delay * (1 - jitter), delay * (1 + jitter)]`` (never above
    ``max_backoff_ms``), so jobs that failed together (an outage) do not all come back together.
    """
    if retry_number < 1:
        raise ValueError("retry_number is 1-based")
    base = options.backoff_ms
    if options.backoff == "fixed":
        delay = float(base)
    elif options.backoff == "linear":
        delay = float(base * retry_number)
    else:
        # Cap the exponent first: 2 ** 1000 would still be exact, but pointless and slow.
        delay = float(base * 2 ** min(retry_number - 1, 62))
    delay = min(delay, float(options.max_backoff_ms))
    if options.jitter > 0 and delay > 0:
        spread = min(options.jitter, 1.0)
        delay = delay * (1 - spread + 2 * spread * rand())
        delay = min(delay, float(options.max_backoff_ms))
    return max(0, round(delay))
