"""What every library adapter provides, and the recorder its no-op job handler reports to.

A worker process learns from environment variables what to record: ``BENCH_MODE`` (``drain`` or
``latency``), ``BENCH_COUNT`` (jobs to see before writing results), ``BENCH_RESULT`` (where to write them
as JSON) and ``BENCH_READY`` (a file created when the first warm-up job ran). Jobs carry one number ``t``:
0 for drain jobs, the producer's ``time.time()`` at enqueue for latency jobs, -1 for warm-up jobs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

BENCH_URL = "BENCH_REDIS_URL"


def redis_url() -> str:
    return os.environ[BENCH_URL]


class Recorder:
    """Counts handled jobs (thread-safe: some libraries run handlers in threads) and writes the results."""

    def __init__(self) -> None:
        self.mode = os.environ.get("BENCH_MODE", "drain")
        self.count = int(os.environ.get("BENCH_COUNT", "0"))
        self.result = os.environ.get("BENCH_RESULT")
        self.ready = os.environ.get("BENCH_READY")
        self._lock = threading.Lock()
        self._seen = 0
        self._first = 0.0
        self._latencies: list[float] = []

    def hit(self, t: float) -> None:
        now = time.time()
        if t < 0:
            if self.ready:
                Path(self.ready).touch()
            return
        with self._lock:
            self._seen += 1
            if self._seen == 1:
                self._first = now
            if t > 0:
                self._latencies.append(now - t)
            if self._seen == self.count and self.result:
                data = {"first": self._first, "last": now, "seen": self._seen, "latencies": self._latencies}
                temporary = self.result + ".tmp"
                Path(temporary).write_text(json.dumps(data))
                os.replace(temporary, self.result)


recorder = Recorder()


class Adapter(ABC):
    """A library under test. Producer methods run in the harness process, ``run_worker`` in its own."""

    name: str = ""
    distribution: str = ""  # the PyPI name, for its version
    notes: str = ""  # how it is configured, shown under the results

    @abstractmethod
    def enqueue_single(self, times: list[float]) -> None:
        """Enqueue one job per entry of ``times``, one call (and round trip) at a time."""

    def enqueue_stamped(self) -> None:
        """Enqueue one latency job carrying the time taken just before the library's enqueue call."""
        self.enqueue_single([time.time()])

    def enqueue_single_sync(self, times: list[float]) -> bool:
        """For an asyncio library that also has a synchronous producer API (for Flask/Django code): enqueue
        one job per entry through it. :returns: False when it has none."""
        return False

    def enqueue_bulk(self, times: list[float]) -> bool:
        """Enqueue them all with the library's bulk API. :returns: False when it has none."""
        return False

    @abstractmethod
    def run_worker(self) -> None:
        """Run one worker (in this process) until killed."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the producer's connections."""


class AsyncAdapter(Adapter):
    """For asyncio libraries: producer calls run on one event loop kept for the adapter's life; subclasses
    implement ``enqueue_one``."""

    def __init__(self) -> None:
        import asyncio

        self._runner = asyncio.Runner()

    def run(self, coroutine: object) -> object:
        return self._runner.run(coroutine)  # type: ignore[arg-type]

    async def enqueue_one(self, t: float) -> None:
        """Enqueue one job carrying ``t`` through the library's async API, awaiting its reply."""
        raise NotImplementedError

    def enqueue_single(self, times: list[float]) -> None:
        async def go() -> None:
            for t in times:
                await self.enqueue_one(t)

        self.run(go())

    def enqueue_stamped(self) -> None:
        # The time is taken inside the running loop, just before the enqueue call, as in an asyncio
        # application: starting the harness's loop for each job costs about 0.2 ms here, and is not the
        # library's.
        async def go() -> None:
            await self.enqueue_one(time.time())

        self.run(go())

    def close(self) -> None:
        self._runner.close()
