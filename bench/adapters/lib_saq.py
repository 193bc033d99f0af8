"""SAQ (asyncio) on Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from saq import Queue, Worker

from adapters.common import AsyncAdapter, recorder, redis_url

CONCURRENCY = 64


async def noop(ctx: Any, *, t: float) -> None:
    recorder.hit(t)


class Adapter(AsyncAdapter):
    name = "saq"
    distribution = "saq"
    notes = f"concurrency {CONCURRENCY}"

    def __init__(self) -> None:
        super().__init__()
        self.queue: Any = Queue.from_url(redis_url(), name="bench")
        self.run(self.queue.connect())

    async def enqueue_one(self, t: float) -> None:
        await self.queue.enqueue("noop", t=t)

    def run_worker(self) -> None:
        async def go() -> None:
            queue = Queue.from_url(redis_url(), name="bench")
            worker = Worker(queue, functions=[noop], concurrency=CONCURRENCY)
            await worker.start()

        asyncio.run(go())

    def close(self) -> None:
        self.run(self.queue.disconnect())
        super().close()
