"""What several commands print: the table (or JSON) of job counts per queue and state, a backend's
capabilities."""

from __future__ import annotations

import json

import attrs

from lssm_jobs.backends.base import BackendCapabilities
from lssm_jobs.cli.escape import escape
from lssm_jobs.jobs import JobStatus


def print_counts(counts: dict[str, dict[JobStatus, int]], *, as_json: bool = False) -> None:
    columns = [
        JobStatus.SCHEDULED,
        JobStatus.PENDING,
        JobStatus.ACTIVE,
        JobStatus.COMPLETED,
        JobStatus.DEAD,
        JobStatus.CANCELLED,
    ]
    if as_json:
        print(
            json.dumps({queue: {s.value: n for s, n in per.items()} for queue, per in sorted(counts.items())})
        )
        return
    shown = {name: escape(name) for name in counts}  # queue names come from whoever enqueued
    width = max([5, *(len(name) for name in shown.values())])
    print(f"{'queue':<{width}}  " + "  ".join(f"{status.value:>9}" for status in columns))
    for name in sorted(counts):
        print(
            f"{shown[name]:<{width}}  " + "  ".join(f"{counts[name].get(status, 0):>9}" for status in columns)
        )
    if not counts:
        print("(no jobs)")


_STORAGE = ("durable", "shared")


def describe_capabilities(capabilities: BackendCapabilities) -> str:
    """One line, e.g. ``pull delivery; delay, priority, fifo, dedupe, leases; durable, shared``."""
    # Every yes/no ability, so a flag added to the contract is shown without touching this function.
    features = [
        field.name
        for field in attrs.fields(BackendCapabilities)
        if field.name not in _STORAGE and getattr(capabilities, field.name) is True
    ]
    missing = [
        name for name in ("delay", "priority", "fifo", "dedupe", "leases") if not getattr(capabilities, name)
    ]
    storage = [
        "durable" if capabilities.durable else "not durable",
        "shared by processes" if capabilities.shared else "one process only",
    ]
    parts = [f"{capabilities.delivery} delivery", ", ".join(features) or "no optional features"]
    if missing:
        parts.append("no " + ", no ".join(missing))
    return "; ".join([*parts, ", ".join(storage)])
