"""arq (asyncio) with its default polling worker."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

from adapters.common import AsyncAdapter, recorder, redis_url

MAX_JOBS = 64


async def noop(ctx: Any, t: float) -> None:
    recorder.hit(t)


class Adapter(AsyncAdapter):
    name = "arq"
    distribution = "arq"
    notes = f"max_jobs {MAX_JOBS}, default poll_delay (0.5 s)"

    def __init__(self) -> None:
        super().__init__()
        self.pool: Any = self.run(create_pool(RedisSettings.from_dsn(redis_url())))

    async def enqueue_one(self, t: float) -> None:
        await self.pool.enqueue_job("noop", t)

    def run_worker(self) -> None:
        async def go() -> None:
            worker = Worker(
                functions=[noop],
                redis_settings=RedisSettings.from_dsn(redis_url()),
                max_jobs=MAX_JOBS,
                handle_signals=False,
            )
            await worker.main()

        asyncio.run(go())

    def close(self) -> None:
        self.run(self.pool.aclose())
        super().close()
