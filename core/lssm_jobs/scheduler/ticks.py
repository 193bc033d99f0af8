"""How a tick (an epoch-seconds instant a schedule fires at) is written in logs, dedupe keys and job meta."""

from __future__ import annotations

from datetime import datetime, timezone


def tick_key(tick: float) -> str:
    """How a tick is written in dedupe keys and job meta: ISO 8601 UTC, e.g. ``2026-03-29T01:00:00Z``."""
    moment = datetime.fromtimestamp(tick, timezone.utc)
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
