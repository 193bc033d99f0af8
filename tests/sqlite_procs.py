"""Worker and producer processes for tests/test_sqlite_backend.py, written against the public API only.

    python tests/sqlite_procs.py worker DB RUNS_DIR --name w1 [--lease-ms 600] [--concurrency 4]
    python tests/sqlite_procs.py produce DB --name p1 --count 100

A worker records every handler run as an empty file in RUNS_DIR named ``<label>.<job id>.<worker>.<attempt>``
(creating a file is atomic, so the test can count runs per job across processes), and stops gracefully on
SIGTERM. Job types:

* ``procs.record``: record the run and return.
* ``procs.crash_once``: record ``started``; on the first attempt hang (the test SIGKILLs the worker there);
  on later attempts record ``done`` and return.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from lssm_jobs import Job
from lssm_jobs.queue import open_queue

RECORD = "procs.record"
CRASH_ONCE = "procs.crash_once"


def _touch(path: Path) -> None:
    path.open("x").close()  # "x": a second run of the same job and attempt would fail loudly


async def work(database: str, runs: Path, name: str, lease_ms: int, concurrency: int) -> None:
    queue = open_queue(
        "sqlite",
        path=database,
        concurrency=concurrency,
        lease_ms=lease_ms,
        poll_interval=0.1,
        shutdown_timeout=5.0,
        sinks=[],
    )

    def record(job: Job[Any]) -> None:
        label = f"{job.payload['producer']}-{job.payload['n']}"
        _touch(runs / f"{label}.{job.id}.{name}.{job.attempt}")

    async def crash_once(job: Job[Any]) -> None:
        _touch(runs / f"started.{job.id}.{name}.{job.attempt}")
        if job.attempt == 1:
            await asyncio.sleep(3600)  # the test kills this process here
        _touch(runs / f"done.{job.id}.{name}.{job.attempt}")

    queue.register(RECORD, record)
    queue.register(CRASH_ONCE, crash_once)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with queue:
        print(f"worker {name} ready", flush=True)
        await queue.run(stopping)
    print(f"worker {name} stopped", flush=True)


async def produce(database: str, name: str, count: int) -> None:
    async with open_queue("sqlite", path=database, sinks=[]) as queue:
        n = 0
        while n < count:
            if n % 20 == 0:  # a mix of single enqueues and batches
                await queue.enqueue(RECORD, {"producer": name, "n": n})
                n += 1
                continue
            batch = range(n, min(n + 7, count))
            await queue.enqueue_many([(RECORD, {"producer": name, "n": i}) for i in batch])
            n = batch.stop
    print(f"producer {name} enqueued {count}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker")
    worker.add_argument("database")
    worker.add_argument("runs", type=Path)
    worker.add_argument("--name", required=True)
    worker.add_argument("--lease-ms", type=int, default=600)
    worker.add_argument("--concurrency", type=int, default=4)
    producer = commands.add_parser("produce")
    producer.add_argument("database")
    producer.add_argument("--name", required=True)
    producer.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    if args.command == "worker":
        asyncio.run(work(args.database, args.runs, args.name, args.lease_ms, args.concurrency))
    else:
        asyncio.run(produce(args.database, args.name, args.count))


if __name__ == "__main__":
    main()
