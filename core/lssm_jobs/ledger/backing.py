"""What a backend whose records live in a job ledger shares: the ledger named by an option, and the reads
(records, counts, dead letters) that the ledger answers for it.

The Google Cloud backends keep job records, dead letters and dedupe keys in a :class:`JobLedger` because
their services keep no history; a third-party backend in the same position subclasses
:class:`LedgerBackedBackend` and names its ledger with :func:`ledger_from`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lssm_jobs.backends.base import DeadLetter, JobRecord, QueueBackend
from lssm_jobs.jobs import JobStatus
from lssm_jobs.ledger import open_ledger
from lssm_jobs.ledger.base import JobLedger


def ledger_from(spec: JobLedger | str | None, options: Mapping[str, Any] | None, *, backend: str) -> JobLedger:
    """The ledger ``spec`` names: a ledger instance as it is, a URL (``sqlite:///jobs-ledger.db``,
    ``redis://host:6379/0``: the scheme names the ledger, the URL is its ``url`` option) or a registered
    ledger name, made with ``options``.

    :raises ValueError: no ledger was given (``backend`` names who needs one), or ``options`` were given
        with a ledger instance.
    :raises PluginNotFoundError: no ledger of that name is installed.
    """
    if isinstance(spec, JobLedger):
        if options:
            raise ValueError("ledger_options apply to a ledger named by ledger=, not to a ledger instance")
        return spec
    if not spec:
        raise ValueError(
            f"{backend} needs a ledger, the store of job records and dead letters the service does not keep: "
            f"ledger='sqlite:///jobs-ledger.db', ledger='redis://HOST:6379/0', or a JobLedger (see "
            f"docs/{backend}.md)"
        )
    settings = dict(options or {})
    name = spec
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower().partition("+")[0]
        name = "redis" if scheme in ("redis", "rediss", "unix") else scheme
        settings["url"] = spec
    return open_ledger(name, **settings)


class LedgerBackedBackend(QueueBackend):
    """A backend whose job records and dead letters are its :attr:`ledger`'s: the reads are the ledger's.
    Subclasses set ``self.ledger`` and implement the rest (push, consume, replay, ...)."""

    ledger: JobLedger

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.ledger.get(job_id)

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        return await self.ledger.counts()

    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        return await self.ledger.list_dead(limit=limit, offset=offset)

    async def get_dead(self, job_id: str) -> DeadLetter | None:
        return await self.ledger.get_dead(job_id)

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        return await self.ledger.purge_dead(job_ids)
