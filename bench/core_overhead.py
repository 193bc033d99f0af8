"""CPU time per job of the core's hot paths, on the in-memory backend: what a change to the dispatcher or
to job records costs every job, without the noise of a Redis server and a busy machine's wall clock.

    python bench/core_overhead.py --jobs 20000 --rounds 5

* **drain**: ``--jobs`` no-op async jobs are enqueued, then one in-process worker (concurrency 64) runs
  them; process CPU seconds from the first job started to the last one finished, per job.
* **bulk enqueue**: ``enqueue_many`` of ``--jobs`` jobs; process CPU seconds per job.

Each figure is the best of ``--rounds`` rounds (the least disturbed one). To compare two versions, run it
alternately with each one first on ``PYTHONPATH`` (e.g. an exported older commit's ``core`` directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import lssm_jobs
from lssm_jobs.jobs import JobCatalog
from lssm_jobs.queue import MemoryJobQueue


async def _drain(jobs: int) -> float:
    done = asyncio.Event()
    handled = 0
    first: list[float] = []

    async def noop(job: Any) -> None:
        nonlocal handled
        if not first:
            first.append(time.process_time())
        handled += 1
        if handled == jobs:
            done.set()

    async with MemoryJobQueue(catalog=JobCatalog(), sinks=[], concurrency=64, poll_interval=0.05) as queue:
        queue.register("bench.noop", noop)
        await queue.enqueue_many([("bench.noop", {"n": n}) for n in range(jobs)])
        await queue.start()
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.process_time() - first[0]
    return elapsed / jobs


async def _bulk(jobs: int) -> float:
    async with MemoryJobQueue(catalog=JobCatalog(), sinks=[]) as queue:
        requests = [("bench.noop", {"n": n}) for n in range(jobs)]
        began = time.process_time()
        await queue.enqueue_many(requests)
        elapsed = time.process_time() - began
    return elapsed / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    drain = min(asyncio.run(_drain(args.jobs)) for _ in range(args.rounds))
    bulk = min(asyncio.run(_bulk(args.jobs)) for _ in range(args.rounds))
    result = {
        "lssm_jobs": lssm_jobs.__file__,
        "drain_us_per_job": round(drain * 1e6, 2),
        "bulk_enqueue_us_per_job": round(bulk * 1e6, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['lssm_jobs']}\n  drain: {result['drain_us_per_job']} µs CPU per job\n"
            f"  bulk enqueue: {result['bulk_enqueue_us_per_job']} µs CPU per job"
        )


if __name__ == "__main__":
    main()
