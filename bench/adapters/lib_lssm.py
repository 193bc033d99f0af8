"""lssm-jobs on its Redis backend (lssm-jobs-redis)."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from lssm_jobs.blocking import BlockingQueue, open_blocking_queue
from lssm_jobs.jobs import JobCatalog, define_job_type
from lssm_jobs.queue import JobQueue, open_queue

from adapters.common import AsyncAdapter, recorder, redis_url

CATALOG = JobCatalog()
NOOP = define_job_type(type="bench.noop", catalog=CATALOG)
CONCURRENCY = int(os.environ.get("BENCH_LSSM_CONCURRENCY", "64"))


def make_queue(**options: Any) -> JobQueue:
    return open_queue("redis", url=redis_url(), prefix="bench:", sinks=[], catalog=CATALOG, **options)


async def noop(job: Any) -> None:
    recorder.hit(job.payload["t"])


class Adapter(AsyncAdapter):
    name = "lssm-jobs"
    distribution = "lssm-jobs"
    notes = f"async handler, one worker process, concurrency {CONCURRENCY}, no event sinks"
    #: Extra queue options of every queue this adapter opens (producer, blocking producer, worker).
    queue_options: dict[str, Any] = {}

    def __init__(self) -> None:
        super().__init__()
        self.queue = make_queue(**self.queue_options)
        self.blocking: BlockingQueue | None = None

    async def enqueue_one(self, t: float) -> None:
        await self.queue.enqueue(NOOP, {"t": t})

    def enqueue_single_sync(self, times: list[float]) -> bool:
        if self.blocking is None:
            self.blocking = open_blocking_queue(
                "redis", url=redis_url(), prefix="bench:", sinks=[], catalog=CATALOG, **self.queue_options
            )
        for t in times:
            self.blocking.enqueue(NOOP, {"t": t})
        return True

    def enqueue_bulk(self, times: list[float]) -> bool:
        async def go() -> None:
            for start in range(0, len(times), 10_000):
                # (type, payload) pairs: enqueue_many's form for jobs without per-job options
                await self.queue.enqueue_many([(NOOP, {"t": t}) for t in times[start : start + 10_000]])

        self.run(go())
        return True

    def run_worker(self) -> None:
        async def go() -> None:
            queue = make_queue(concurrency=CONCURRENCY, **self.queue_options)
            queue.register(NOOP, noop)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            async with queue:
                await queue.run(stop)

        asyncio.run(go())

    def close(self) -> None:
        if self.blocking is not None:
            self.blocking.close()
        self.run(self.queue.close())
        super().close()
