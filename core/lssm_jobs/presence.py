"""A worker announcing itself in its backend while it runs (``lssm-jobs workers`` lists what it announces).

On start the worker registers a :class:`~lssm_jobs.backends.base.WorkerInfo` (host, process id, queues,
concurrency); every ``interval`` seconds it renews it with what it did since (jobs done, jobs running now);
on a graceful stop it removes it. A worker that stops renewing (killed, frozen, cut off from the backend)
ages out after :data:`MISSED_BEATS` intervals. Only backends with
``BackendCapabilities(worker_registry=True)`` take part.

Announcing never stops a worker: when the backend cannot be reached the worker keeps running jobs, logs
one warning, and registers again once a heartbeat gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping
from typing import Protocol

from lssm_jobs.backends.base import MAX_LISTED_JOBS, WorkerInfo, WorkerRegistry
from lssm_jobs.consumer import brief_error

log = logging.getLogger("lssm_jobs.worker")

#: Heartbeats a worker may miss before its record ages out.
MISSED_BEATS = 3
#: Longest a stopping worker waits to remove its record.
UNREGISTER_TIMEOUT = 5.0


class _Progress(Protocol):
    """What the presence reads of the dispatcher (:class:`~lssm_jobs.worker.Dispatcher`)."""

    @property
    def jobs_done(self) -> int: ...

    @property
    def current(self) -> Mapping[int, str]: ...


def new_worker_id() -> str:
    """``host-pid-random``: unique per worker run, readable in ``lssm-jobs workers``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class WorkerPresence:
    """Keeps one worker's record in a :class:`~lssm_jobs.backends.base.WorkerRegistry` while it runs.

    :param interval: seconds between heartbeats; the record lives ``MISSED_BEATS * interval``.
    """

    def __init__(
        self,
        registry: WorkerRegistry,
        progress: _Progress,
        *,
        queues: tuple[str, ...] | None,
        concurrency: int,
        interval: float,
    ) -> None:
        self.registry = registry
        self.progress = progress
        self.queues = queues
        self.concurrency = concurrency
        self.interval = interval
        self.ttl_ms = max(1, int(MISSED_BEATS * interval * 1000))
        self.id = new_worker_id()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def info(self) -> WorkerInfo:
        """The record as of now."""
        running = list(self.progress.current.values())
        return WorkerInfo(
            id=self.id,
            host=self.host,
            pid=self.pid,
            queues=self.queues,
            concurrency=self.concurrency,
            started_at=self.started_at,
            last_seen=time.time(),
            jobs_done=self.progress.jobs_done,
            current_jobs=tuple(running[:MAX_LISTED_JOBS]),
            in_flight=len(running),
        )

    def start(self) -> None:
        """Start announcing: register, then renew every ``interval``, in a task of its own, so a backend
        that is slow or unreachable never delays the worker (a failure is logged and tried again)."""
        self._task = asyncio.create_task(self._beat(), name="lssm-jobs worker presence")

    async def _announce(self, *, registered: bool) -> bool:
        try:
            if registered and await self.registry.heartbeat_worker(self.info(), self.ttl_ms):
                ok = True
            else:
                if registered:
                    log.warning("this worker's record %s had aged out; registering it again", self.id)
                await self.registry.register_worker(self.info(), self.ttl_ms)
                ok = True
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not self._failing:
                log.warning("could not announce this worker (%s); retrying each heartbeat", brief_error(error))
            self._failing = True
            return False
        if self._failing:
            log.info("this worker is announced again as %s", self.id)
        self._failing = False
        return ok

    async def _beat(self) -> None:
        registered = await self._announce(registered=False)
        while True:
            await asyncio.sleep(self.interval)
            registered = await self._announce(registered=registered)

    async def stop(self) -> None:
        """Stop the heartbeat and remove the record (a failure is logged: the record then ages out)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            # Bounded: a stop must not wait for an unreachable backend (the record then ages out).
            await asyncio.wait_for(self.registry.unregister_worker(self.id), UNREGISTER_TIMEOUT)
        except Exception as error:
            log.warning("could not remove this worker's record (%s); it ages out", brief_error(error))
