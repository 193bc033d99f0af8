"""RQ with its SimpleWorker (no fork per job: RQ's fastest worker)."""

from __future__ import annotations

from redis import Redis
from rq import Queue, SimpleWorker

from adapters.common import Adapter as BaseAdapter
from adapters.common import recorder, redis_url


def noop(t: float) -> None:
    recorder.hit(t)


class Adapter(BaseAdapter):
    name = "rq"
    distribution = "rq"
    notes = "SimpleWorker (no fork per job), one process, one job at a time (RQ has no in-worker concurrency)"

    def __init__(self) -> None:
        self.redis = Redis.from_url(redis_url())
        self.queue = Queue("bench", connection=self.redis)

    def enqueue_single(self, times: list[float]) -> None:
        for t in times:
            self.queue.enqueue(noop, t)

    def enqueue_bulk(self, times: list[float]) -> bool:
        for start in range(0, len(times), 10_000):
            self.queue.enqueue_many(
                [Queue.prepare_data(noop, args=(t,)) for t in times[start : start + 10_000]]
            )
        return True

    def run_worker(self) -> None:
        redis = Redis.from_url(redis_url())
        worker = SimpleWorker([Queue("bench", connection=redis)], connection=redis)
        worker.work(with_scheduler=False, logging_level="WARNING")

    def close(self) -> None:
        self.redis.close()
