"""The producer and worker paths of lssm-jobs in one process on the memory backend, without Redis:

    python bench/memory_path.py [--single 5000] [--bulk 50000] [--jobs 20000] [--rounds 3]

Per round: ``enqueue`` of ``--single`` jobs one call at a time, ``enqueue_many`` of ``--bulk`` jobs (in
calls of 10,000, as ``run.py`` does), and a drain: ``--jobs`` jobs enqueued, then one queue with an async
no-op handler (concurrency 64) runs them all; the rate is jobs / time from ``start()`` until the last
completion is counted. Each figure is jobs per second of this process's CPU time (``process_time``),
not of wall-clock time: everything runs in this one process, so on a shared machine the CPU time is what
the code costs, whatever else runs meanwhile. The best round of each figure is printed. What it isolates
is the Python cost of the producer and the dispatcher; ``run.py`` measures the same paths on Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from lssm_jobs.jobs import JobCatalog, JobStatus, define_job_type
from lssm_jobs.queue import MemoryJobQueue

CATALOG = JobCatalog()
NOOP = define_job_type(type="bench.noop", catalog=CATALOG)


async def _round(single: int, bulk: int, jobs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with MemoryJobQueue(sinks=[], catalog=CATALOG) as queue:
        started = time.process_time()
        for _ in range(single):
            await queue.enqueue(NOOP, {"t": 0.0})
        out["single_per_s"] = single / (time.process_time() - started)
    async with MemoryJobQueue(sinks=[], catalog=CATALOG) as queue:
        started = time.process_time()
        for start in range(0, bulk, 10_000):
            await queue.enqueue_many([(NOOP, {"t": 0.0}) for _ in range(min(10_000, bulk - start))])
        out["bulk_per_s"] = bulk / (time.process_time() - started)
    done = asyncio.Event()
    count = 0

    async def noop(job: Any) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    async with MemoryJobQueue(sinks=[], catalog=CATALOG, concurrency=64, poll_interval=0.05) as queue:
        queue.register(NOOP, noop)
        for start in range(0, jobs, 10_000):
            await queue.enqueue_many([(NOOP, {"t": 0.0}) for _ in range(min(10_000, jobs - start))])
        started = time.process_time()
        await queue.start()
        await asyncio.wait_for(done.wait(), 300)
        while (await queue.counts()).get("default", {}).get(JobStatus.COMPLETED, 0) < jobs:
            await asyncio.sleep(0.001)
        out["drain_per_s"] = jobs / (time.process_time() - started)
        await queue.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=5_000)
    parser.add_argument("--bulk", type=int, default=50_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the best figures as one JSON line")
    options = parser.parse_args()
    best: dict[str, float] = {}
    for _ in range(options.rounds):
        for key, value in asyncio.run(_round(options.single, options.bulk, options.jobs)).items():
            best[key] = max(best.get(key, 0.0), value)
    if options.json:
        print(json.dumps(best))
    else:
        for key, value in best.items():
            print(f"{key:>14}: {value:>10,.0f} jobs/s")


if __name__ == "__main__":
    main()
