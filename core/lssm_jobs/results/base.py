"""The result store contract: where the value a handler returned (or the failure that ended its job) is kept
until its retention ends, for ``queue.result(job_id)`` / ``job.wait()``.

Semantics every store implements (:class:`lssm_jobs.testing.ResultStoreConformance` checks them):

* :meth:`ResultStore.put` stores one :class:`StoredResult` per job id, replacing an earlier one (a job that
  ran again after its worker died writes again), and wakes the callers waiting in :meth:`ResultStore.wait`.
* :meth:`ResultStore.get` returns the stored result until ``expires_at`` (epoch seconds) has passed, then
  None: an expired result is never returned, whether or not the store has deleted it yet.
* :meth:`ResultStore.wait` returns the result as soon as it is stored (or at once when it already is), or
  None when ``timeout`` seconds pass first. Stores with a notification (an asyncio event, a Redis blocking
  pop) wake on it; the default implementation is a poll that backs off to a quarter of a second.
* Methods raise ``ConnectionError`` (or a subclass) when the storage cannot be reached, and nothing else for
  ordinary outcomes. ``value`` is opaque bytes to the store (the queue encodes results as UTF-8 JSON).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import attrs

ResultStatus = Literal["completed", "failed"]

#: The first and the longest pause of the default :meth:`ResultStore.wait` poll (seconds).
POLL_FIRST = 0.01
POLL_MAX = 0.25


@attrs.frozen(kw_only=True)
class StoredResult:
    """How a job ended, as a result store keeps it.

    :param status: ``"completed"`` (``value`` holds the encoded return value) or ``"failed"`` (the job was
        dead-lettered: ``error`` is its last error, ``reason`` why it was dead-lettered).
    :param finished_at: epoch seconds the job ended.
    :param expires_at: epoch seconds after which the result is gone (its retention, ``result_ttl_ms``).
    """

    job_id: str
    job_type: str
    status: ResultStatus
    value: bytes | None = None
    error: str | None = None
    reason: str | None = None
    finished_at: float
    expires_at: float


class ResultStore(ABC):
    """Results of finished jobs, kept for their retention. Created by a
    :class:`~lssm_jobs.registrations.ResultStoreSpec` factory (or directly), opened once before use and
    closed once. All methods are coroutines and must not block the event loop.
    """

    #: The registered name (``"memory"``, ``"sqlite"``, ``"redis"``, ...).
    name: ClassVar[str] = ""

    async def open(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Connect, and create tables if needed. :raises ConnectionError: unreachable."""

    async def close(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Release connections."""

    @abstractmethod
    async def put(self, result: StoredResult) -> None:
        """Store ``result`` under its job id, replacing any earlier one, and wake its waiters.

        :raises ConnectionError: the storage cannot be reached; nothing may be assumed stored.
        """

    @abstractmethod
    async def get(self, job_id: str, *, now: float) -> StoredResult | None:
        """The job's result, or None when there is none or it expired (``expires_at <= now``).

        :raises ConnectionError: the storage cannot be reached.
        """

    @abstractmethod
    async def delete(self, job_id: str) -> bool:
        """Forget the job's result. :returns: False when there was none (expired ones may count as none)."""

    @abstractmethod
    async def prune(self, *, now: float) -> int:
        """Delete results whose ``expires_at <= now``. :returns: how many were deleted (stores whose
        storage expires keys by itself may return 0)."""

    async def wait(self, job_id: str, *, timeout: float) -> StoredResult | None:
        """The job's result once it is stored, or None when ``timeout`` seconds pass first.

        This default polls :meth:`get`, backing off from 10 ms to 250 ms; override it where the storage can
        notify (see :mod:`lssm_jobs.results.memory`).

        :raises ConnectionError: the storage cannot be reached.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        pause = POLL_FIRST
        while True:
            found = await self.get(job_id, now=time.time())
            if found is not None:
                return found
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)
