"""CPU time per job of lssm-jobs' own process, on Redis or the memory backend: the figure for comparing two
versions of the code on a shared machine.

    python bench/cpu_per_job.py [--backend redis|memory] [--rounds 5]

``run.py`` measures wall-clock rates, which on a machine shared with other work move by 2-3x between runs,
whatever the code does. This script measures what the code costs: the CPU time (``process_time``) this
process spends per job, for ``enqueue`` one call at a time (async), the blocking facade's ``enqueue``
(sync), ``enqueue_many`` with ``(type, payload)`` pairs, and a drain (an async no-op handler, concurrency
64) of the jobs it enqueued. On Redis the server's own work is not counted (it runs in redis-server, a
process this script starts on a free loopback port). The best round of each figure is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lssm_jobs.blocking import BlockingQueue
from lssm_jobs.jobs import JobCatalog, JobStatus, define_job_type
from lssm_jobs.queue import JobQueue, MemoryJobQueue, open_queue

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Server  # the harness's throwaway redis-server

CATALOG = JobCatalog()
NOOP = define_job_type(type="bench.noop", catalog=CATALOG)


def _queue(url: str | None, prefix: str, **options: Any) -> JobQueue:
    if url is None:
        return MemoryJobQueue(sinks=[], catalog=CATALOG, **options)
    return open_queue("redis", url=url, prefix=prefix, sinks=[], catalog=CATALOG, **options)


async def _async_round(url: str | None, prefix: str, single: int, bulk: int, jobs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with _queue(url, prefix + "s:") as queue:
        await queue.enqueue(NOOP, {"t": 0.0})  # connections, scripts
        started = time.process_time()
        for _ in range(single):
            await queue.enqueue(NOOP, {"t": 0.0})
        out["single_us"] = (time.process_time() - started) / single * 1e6
    async with _queue(url, prefix + "b:") as queue:
        await queue.enqueue(NOOP, {"t": 0.0})
        started = time.process_time()
        for start in range(0, bulk, 10_000):
            await queue.enqueue_many([(NOOP, {"t": 0.0}) for _ in range(min(10_000, bulk - start))])
        out["bulk_us"] = (time.process_time() - started) / bulk * 1e6
    done = asyncio.Event()
    count = 0

    async def noop(job: Any) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    async with _queue(url, prefix + "d:", concurrency=64, poll_interval=0.05) as queue:
        queue.register(NOOP, noop)
        for start in range(0, jobs, 10_000):
            await queue.enqueue_many([(NOOP, {"t": 0.0}) for _ in range(min(10_000, jobs - start))])
        started = time.process_time()
        await queue.start()
        await asyncio.wait_for(done.wait(), 600)
        while (await queue.counts()).get("default", {}).get(JobStatus.COMPLETED, 0) < jobs:
            await asyncio.sleep(0.01)
        out["drain_us"] = (time.process_time() - started) / jobs * 1e6
        await queue.stop()
    return out


def _sync_round(url: str | None, prefix: str, single: int) -> float:
    with BlockingQueue(_queue(url, prefix + "y:")) as blocking:
        blocking.enqueue(NOOP, {"t": 0.0})
        started = time.process_time()
        for _ in range(single):
            blocking.enqueue(NOOP, {"t": 0.0})
        return (time.process_time() - started) / single * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("redis", "memory"), default="redis")
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--bulk", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-server", default=shutil.which("redis-server"))
    options = parser.parse_args()
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lssm-cpu-") as temporary:
        server = Server(options.redis_server, Path(temporary)) if options.backend == "redis" else None
        url = server.url if server is not None else None
        try:
            for round_number in range(options.rounds):
                prefix = f"cpu{round_number}:"
                figures = asyncio.run(_async_round(url, prefix, options.single, options.bulk, options.jobs))
                figures["single_sync_us"] = _sync_round(url, prefix, options.single)
                for key, value in figures.items():
                    best[key] = min(best.get(key, float("inf")), value)
        finally:
            if server is not None:
                server.stop()
    print(json.dumps({key: round(value, 2) for key, value in best.items()}))


if __name__ == "__main__":
    main()
