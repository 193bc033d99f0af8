"""The worker's side of results: after a handler returns, its value is checked, encoded and stored; when a
job is dead-lettered, its failure is stored so that waiters learn of it at once.

Only job types that declare a ``result`` type store anything: a job type without one costs one attribute
test per job (no encoding, no backend write), whatever its handler returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lssm_jobs.jobs import JobType
from lssm_jobs.results.base import ResultStore, StoredResult
from lssm_jobs.results.codec import encode_result

log = logging.getLogger("lssm_jobs.worker")

#: How long results stay readable when neither the job type nor the queue says: 24 hours.
DEFAULT_RESULT_TTL_MS = 86_400_000


class ResultRecorder:
    """Stores the results and final failures of one queue's jobs in its result store.

    :param store: returns the queue's opened result store, or None when it has none.
    :param default_ttl_ms: the retention of job types without their own ``result_ttl_ms``.
    """

    def __init__(
        self,
        store: Callable[[], Awaitable[ResultStore | None]],
        *,
        default_ttl_ms: int = DEFAULT_RESULT_TTL_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.default_ttl_ms = default_ttl_ms
        self.clock = clock
        self._warned: set[str] = set()

    def _expires(self, job_type: JobType[Any, Any], now: float) -> float:
        ttl_ms = job_type.result_ttl_ms if job_type.result_ttl_ms is not None else self.default_ttl_ms
        return now + ttl_ms / 1000

    def encode(self, job_type: JobType[Any, Any], value: Any) -> bytes:
        """:raises InvalidResultError: ``value`` does not fit the job type's result type."""
        return encode_result(job_type.type, job_type.result, value)

    async def completed(self, job_id: str, job_type: JobType[Any, Any], value: bytes) -> None:
        """Store an encoded return value. :raises ConnectionError: the store is unreachable."""
        store = await self._opened(job_type.type)
        if store is None:
            return
        now = self.clock()
        await store.put(
            StoredResult(
                job_id=job_id,
                job_type=job_type.type,
                status="completed",
                value=value,
                finished_at=now,
                expires_at=self._expires(job_type, now),
            )
        )

    async def failed(
        self, job_id: str, job_type: JobType[Any, Any], *, error: str | None, reason: str
    ) -> None:
        """Store a final failure. :raises ConnectionError: the store is unreachable."""
        store = await self._opened(job_type.type)
        if store is None:
            return
        now = self.clock()
        await store.put(
            StoredResult(
                job_id=job_id,
                job_type=job_type.type,
                status="failed",
                error=error,
                reason=reason,
                finished_at=now,
                expires_at=self._expires(job_type, now),
            )
        )

    async def _opened(self, job_type: str) -> ResultStore | None:
        store = await self._store()
        if store is None and job_type not in self._warned:
            self._warned.add(job_type)
            log.warning(
                "job type %r declares a result type, but this queue has no result store (its backend stores "
                "no results and no result_store= was given): its results are not kept",
                job_type,
            )
        return store
