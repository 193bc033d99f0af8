"""Errors of the Pub/Sub backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lssm_jobs.errors import LssmJobsError


class PublishError(LssmJobsError, ConnectionError):
    """Publishing jobs to Pub/Sub failed. Jobs named in ``failed`` were not stored (their records were
    undone); jobs in ``published`` of the same call were stored and will run.

    A ``ConnectionError``, so callers that retry on connection trouble retry this too.
    """

    def __init__(self, failed: Mapping[str, str], published: Sequence[str]) -> None:
        self.failed = dict(failed)
        self.published = list(published)
        first_id, first_error = next(iter(self.failed.items()))
        more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
        stored = f"; {len(self.published)} other job(s) of this call were published" if self.published else ""
        super().__init__(
            f"publishing job {first_id} to Pub/Sub failed{more}: {first_error}; nothing was stored for "
            f"the failed job(s){stored}"
        )


class MissingResourceError(LssmJobsError, LookupError):
    """A topic or subscription the backend needs does not exist and ``create`` is off."""
