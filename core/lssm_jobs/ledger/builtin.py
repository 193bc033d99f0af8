"""The built-in job ledgers, registered through the same hook as third-party ones."""

from __future__ import annotations

from typing import Any

from lssm_jobs.hookspecs import hookimpl
from lssm_jobs.ledger.base import JobLedger
from lssm_jobs.ledger.memory import MemoryLedger
from lssm_jobs.registrations import JobLedgerSpec


def _sqlite_ledger(**options: Any) -> JobLedger:
    from lssm_jobs.ledger.sqlite import SqliteLedger

    return SqliteLedger(**options)


@hookimpl
def lssm_jobs_job_ledgers() -> list[JobLedgerSpec]:
    return [
        JobLedgerSpec(
            name="memory",
            factory=MemoryLedger.from_options,
            description="job records in this process's memory (development and tests; not durable)",
            options_help={
                "namespace": "name of a process-wide store to share between ledgers",
                "completed_retention": "seconds completed jobs stay readable (default 3600)",
            },
        ),
        JobLedgerSpec(
            name="sqlite",
            factory=_sqlite_ledger,
            description="job records in a sqlite file (WAL), shared by processes on this machine",
            options_help={
                "path": "database file (created if missing)",
                "url": "sqlite:///relative.db or sqlite:////absolute.db, instead of path",
                "completed_retention": "seconds completed jobs stay readable (default 3600)",
            },
        ),
    ]
