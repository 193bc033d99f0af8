"""Taskiq with taskiq-redis' list broker (blocking pop)."""

from __future__ import annotations

import asyncio

from taskiq.receiver import Receiver
from taskiq_redis import ListQueueBroker

from adapters.common import AsyncAdapter, recorder, redis_url

broker = ListQueueBroker(url=redis_url(), queue_name="bench")
MAX_TASKS = 64


@broker.task
async def noop(t: float) -> None:
    recorder.hit(t)


class Adapter(AsyncAdapter):
    name = "taskiq"
    distribution = "taskiq"
    notes = f"taskiq-redis ListQueueBroker, no result backend, max_async_tasks {MAX_TASKS}"

    def __init__(self) -> None:
        super().__init__()
        self.run(broker.startup())

    async def enqueue_one(self, t: float) -> None:
        await noop.kiq(t)

    def run_worker(self) -> None:
        async def go() -> None:
            broker.is_worker_process = True
            await broker.startup()
            receiver = Receiver(broker, max_async_tasks=MAX_TASKS, run_startup=False)
            await receiver.listen(asyncio.Event())

        asyncio.run(go())

    def close(self) -> None:
        self.run(broker.shutdown())
        super().close()
