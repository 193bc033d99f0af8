"""Job ledgers: the companion store of job records and dead letters for backends whose service keeps no
history (Google Cloud Tasks, Google Cloud Pub/Sub).

``JobLedger`` is the contract (:mod:`lssm_jobs.ledger.base`); ``memory`` and ``sqlite`` are built in,
``redis`` comes with ``lssm-jobs-redis``, and plugins add more through the ``lssm_jobs_job_ledgers`` hook.
``open_ledger(name, **options)`` makes one by name; ``LedgerConformance`` (``lssm_jobs.testing``) is the
contract suite every ledger passes.
"""

from __future__ import annotations

from typing import Any

from lssm_jobs.ledger.base import FIRST_GENERATION, Claim, ClaimOutcome, JobLedger
from lssm_jobs.ledger.memory import MemoryLedger, MemoryLedgerStore


def open_ledger(name: str, **options: Any) -> JobLedger:
    """A new, unopened ledger registered as ``name`` by any installed plugin.

    :raises PluginNotFoundError: no such ledger (the message lists the available ones).
    :raises TypeError: the ledger does not accept one of the options.
    """
    from lssm_jobs.plugins import get_plugins

    spec = get_plugins().job_ledger(name)
    try:
        return spec.factory(**options)
    except TypeError as error:
        raise TypeError(f"ledger {name!r} rejected its options {sorted(options)}: {error}") from error


__all__ = [
    "FIRST_GENERATION",
    "Claim",
    "ClaimOutcome",
    "JobLedger",
    "MemoryLedger",
    "MemoryLedgerStore",
    "open_ledger",
]
