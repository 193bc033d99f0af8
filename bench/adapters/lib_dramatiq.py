"""Dramatiq on its Redis broker."""

from __future__ import annotations

import signal
import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from adapters.common import Adapter as BaseAdapter
from adapters.common import recorder, redis_url

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)
THREADS = 8


@dramatiq.actor(max_retries=0, queue_name="bench")
def noop(t: float) -> None:
    recorder.hit(t)


class Adapter(BaseAdapter):
    name = "dramatiq"
    distribution = "dramatiq"
    notes = f"RedisBroker, one process with {THREADS} worker threads"

    def enqueue_single(self, times: list[float]) -> None:
        for t in times:
            noop.send(t)

    def run_worker(self) -> None:
        worker = dramatiq.Worker(broker, worker_threads=THREADS)
        worker.start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        worker.stop()
