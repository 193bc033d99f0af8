"""CPU cost per job of the core for jobs that return nothing, to compare two checkouts of lssm-jobs (the
job results feature must not make them dearer).

    python bench/results_overhead.py --jobs 20000 --rounds 5 [--baseline /path/to/other/checkout]

Each round runs, in a fresh subprocess per checkout (alternating, so both see the same machine load), on the
in-memory backend (no service in the measurement): ``enqueue`` one job per call, ``enqueue_many`` of all
jobs in one call, and a drain by one worker (concurrency 64, an async handler that returns None). Figures
are CPU seconds of the process (``time.process_time``) per job, in microseconds; the median of the rounds
is printed per checkout. With ``--baseline``, the other checkout's ``core`` goes first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


async def _measure(jobs: int) -> dict[str, float]:
    from lssm_jobs import JobCatalog, JobQueue, define_job_type
    from lssm_jobs.backends.memory import MemoryBackend

    catalog = JobCatalog()
    ping = define_job_type(type="bench.ping", catalog=catalog)
    figures: dict[str, float] = {}

    queue = JobQueue(MemoryBackend(completed_retention=0), catalog=catalog, sinks=[])
    async with queue:
        started = time.process_time()
        for index in range(jobs):
            await queue.enqueue(ping, {"i": index})
        figures["enqueue_us"] = (time.process_time() - started) / jobs * 1e6

    queue = JobQueue(MemoryBackend(completed_retention=0), catalog=catalog, sinks=[])
    async with queue:
        started = time.process_time()
        await queue.enqueue_many([(ping, {"i": index}) for index in range(jobs)])
        figures["enqueue_many_us"] = (time.process_time() - started) / jobs * 1e6

    done = asyncio.Event()
    finished = 0

    async def handler(job: Any) -> None:
        nonlocal finished
        finished += 1
        if finished == jobs:
            done.set()

    queue = JobQueue(MemoryBackend(completed_retention=0), catalog=catalog, sinks=[], concurrency=64)
    queue.register(ping, handler)
    async with queue:
        await queue.enqueue_many([(ping, {"i": index}) for index in range(jobs)])
        started = time.process_time()
        await queue.start()
        await done.wait()
        figures["drain_us"] = (time.process_time() - started) / jobs * 1e6
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout of lssm-jobs to compare with")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_measure(args.jobs))))
        return 0
    sides: dict[str, dict[str, str]] = {"this checkout": dict(os.environ)}
    if args.baseline is not None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(args.baseline / "core"), env.get("PYTHONPATH", "")])
        sides = {"baseline": env, **sides}
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side, env in sides.items():
            output = subprocess.run(
                [sys.executable, __file__, "--child", "--jobs", str(args.jobs)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs[side].append(json.loads(output.splitlines()[-1]))
    for side, figures in runs.items():
        medians = {key: statistics.median(run[key] for run in figures) for key in figures[0]}
        print(f"{side:14s} " + "  ".join(f"{key} {value:7.1f}" for key, value in medians.items()))
        print(f"{'':14s} rounds: " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
