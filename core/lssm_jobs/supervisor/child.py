"""The worker-process end of supervision: heartbeats, recycling, and the supervisor's drain/exit orders.

Recycling is decided here, by the worker itself, the way Celery's ``--max-tasks-per-child`` and
``--max-memory-per-child`` are: after ``max_jobs`` handler runs (completed, retried or failed), or once its
resident memory is above ``max_memory``, the worker tells the supervisor why, stops leasing, lets its
in-flight jobs finish (a graceful drain, nothing is lost) and exits; the supervisor starts a fresh one.
Memory is checked every heartbeat, so a worker busy with one long job is recycled once that job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from lssm_jobs.events import Event
from lssm_jobs.queue import JobQueue
from lssm_jobs.supervisor.memory import format_size, rss_bytes
from lssm_jobs.supervisor.protocol import BEAT_INTERVAL, encode, read_message

log = logging.getLogger("lssm_jobs.supervisor")

_FINISHED = frozenset({"job.completed", "job.retrying", "job.failed"})


class SupervisorLink:
    """Connects a worker process to its supervisor over the inherited socket ``fd``.

    :param drain: called on the supervisor's ``drain`` order, on recycling, and when the supervisor is gone.
    :param hurry: called on the supervisor's ``exit`` order (its second signal).
    """

    def __init__(
        self,
        fd: int,
        queue: JobQueue,
        *,
        drain: Callable[[str], None],
        hurry: Callable[[], None],
        max_jobs: int | None = None,
        max_memory: int | None = None,
    ) -> None:
        self.fd = fd
        self.queue = queue
        self.drain = drain
        self.hurry = hurry
        self.max_jobs = max_jobs
        self.max_memory = max_memory
        self.jobs = 0
        self.recycling: str | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Counting costs an event per job; only --max-jobs needs it.
        self._unsubscribe = (
            [queue.on(name, self._count) for name in _FINISHED] if max_jobs is not None else []
        )

    def _count(self, event: Event) -> None:
        self.jobs += 1
        if self.max_jobs is not None and self.jobs >= self.max_jobs:
            self._recycle(f"ran {self.jobs} jobs (--max-jobs {self.max_jobs})")

    async def start(self) -> None:
        sock = socket.socket(fileno=self.fd)
        reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        self._tasks = [
            asyncio.create_task(self._listen(reader), name="lssm-jobs supervisor orders"),
            asyncio.create_task(self._beat(), name="lssm-jobs heartbeat"),
        ]

    def send(self, message: dict[str, Any]) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.write(encode(message))

    def ready(self) -> None:
        self.send({"type": "ready"})

    def _recycle(self, reason: str) -> None:
        if self.recycling is not None:
            return
        self.recycling = reason
        log.warning("recycling this worker process: it %s; draining, then a fresh process takes over", reason)
        self.send({"type": "recycle", "reason": reason})
        self.drain("recycle")

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while True:
            message = await read_message(reader)
            if message is None:
                log.warning("the supervisor is gone; draining and exiting")
                self.drain("supervisor gone")
                return
            kind = message.get("type")
            if kind == "drain":
                self.drain("supervisor")
            elif kind == "exit":
                self.hurry()

    async def _beat(self) -> None:
        while True:
            rss = rss_bytes()
            if self.max_memory is not None and rss is not None and rss > self.max_memory:
                self._recycle(
                    f"uses {format_size(rss)} of memory, above --max-memory {format_size(self.max_memory)}"
                )
            beat: dict[str, Any] = {"type": "beat", "rss": rss}
            if self.max_jobs is not None:
                beat["jobs"] = self.jobs
            self.send(beat)
            writer = self._writer
            if writer is not None:
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.drain()
            await asyncio.sleep(BEAT_INTERVAL)

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
