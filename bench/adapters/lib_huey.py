"""Huey on Redis, thread workers."""

from __future__ import annotations

from huey import RedisHuey

from adapters.common import Adapter as BaseAdapter
from adapters.common import recorder, redis_url

huey = RedisHuey("bench", url=redis_url())
WORKERS = 8


@huey.task()
def noop(t: float) -> None:
    recorder.hit(t)


class Adapter(BaseAdapter):
    name = "huey"
    distribution = "huey"
    notes = f"RedisHuey (blocking pop), consumer with {WORKERS} thread workers"

    def enqueue_single(self, times: list[float]) -> None:
        for t in times:
            noop(t)

    def run_worker(self) -> None:
        consumer = huey.create_consumer(workers=WORKERS, worker_type="thread", periodic=False)
        consumer.run()
