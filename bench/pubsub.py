"""Throughput and latency of the gcp-pubsub backend on local Pub/Sub servers: our own test server and, where
installed, the official Java emulator. Neither is the real service (no network hop, no replication), so the
figures show the client-side and server-side costs of the design, not production numbers.

    python bench/pubsub.py                         # both servers, default sizes
    python bench/pubsub.py --servers own --jobs 2000

For each server, with an in-memory ledger (what the backend adds on top of Pub/Sub itself):

1. single enqueue: jobs enqueued one call at a time (each waits for its publish to be confirmed);
2. bulk enqueue: ``enqueue_many`` (the client's batching, results awaited in order);
3. drain: ``--jobs`` no-op jobs are enqueued, then one worker (``--concurrency``) drains them: the rate is
   jobs / (last job finished - first job started);
4. idle latency: with a worker running and idle, one job at a time; from just before ``enqueue`` to the
   start of its handler (median, p95).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from lssm_jobs.jobs import JobCatalog
from lssm_jobs.ledger import MemoryLedger
from lssm_jobs.queue import JobQueue
from lssm_jobs_gcp_pubsub import PubSubBackend
from lssm_jobs_gcp_pubsub.testing.emulator import LocalPubSub, java_emulator_path


def _queue(address: str, concurrency: int) -> JobQueue:
    backend = PubSubBackend(
        project="bench",
        prefix=f"b{uuid.uuid4().hex[:8]}.",
        emulator_host=address,
        ledger=MemoryLedger(),
        queues=["default"],
    )
    return JobQueue(backend, catalog=JobCatalog(), sinks=[], concurrency=concurrency)


async def measure(address: str, jobs: int, singles: int, concurrency: int, pings: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with _queue(address, concurrency) as queue:
        await queue.enqueue("warm-up", {})
        started = time.perf_counter()
        for i in range(singles):
            await queue.enqueue("bench.single", {"i": i})
        results["single enqueue (jobs/s)"] = singles / (time.perf_counter() - started)
        started = time.perf_counter()
        await queue.enqueue_many([("bench.bulk", {"i": i}) for i in range(jobs)])
        results["bulk enqueue (jobs/s)"] = jobs / (time.perf_counter() - started)

    async with _queue(address, concurrency) as queue:
        await queue.enqueue_many([("bench.drain", {"i": i}) for i in range(jobs)])
        first: list[float] = []
        last = [0.0]
        done = asyncio.Event()
        count = 0

        async def drain(job: Any) -> None:
            nonlocal count
            now = time.perf_counter()
            if not first:
                first.append(now)
            count += 1
            last[0] = now
            if count >= jobs:
                done.set()

        queue.register("bench.drain", drain)
        await queue.start()
        await asyncio.wait_for(done.wait(), 600)
        results["drain (jobs/s)"] = jobs / max(last[0] - first[0], 1e-9)

        latencies: list[float] = []
        arrived = asyncio.Event()
        sent = [0.0]

        async def ping(job: Any) -> None:
            latencies.append(time.perf_counter() - sent[0])
            arrived.set()

        queue.register("bench.ping", ping)
        for _ in range(pings):
            arrived.clear()
            sent[0] = time.perf_counter()
            await queue.enqueue("bench.ping", {})
            await asyncio.wait_for(arrived.wait(), 60)
            await asyncio.sleep(0.05)
        latencies.sort()
        results["idle latency p50 (ms)"] = statistics.median(latencies) * 1000
        results["idle latency p95 (ms)"] = latencies[int(len(latencies) * 0.95) - 1] * 1000
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--servers", default="own,java", help="own, java or both (comma-separated)")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--pings", type=int, default=50)
    args = parser.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    for kind in [kind.strip() for kind in args.servers.split(",") if kind.strip()]:
        if kind == "java" and java_emulator_path() is None:
            print("java: the Java Pub/Sub emulator is not installed; skipped", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as directory:
            server = LocalPubSub(kind, Path(directory)).start()  # type: ignore[arg-type]
            try:
                rows[kind] = asyncio.run(
                    measure(server.address, args.jobs, args.singles, args.concurrency, args.pings)
                )
            finally:
                server.stop()
    metrics = list(next(iter(rows.values()))) if rows else []
    print("| metric | " + " | ".join(rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    for metric in metrics:
        print(f"| {metric} | " + " | ".join(f"{rows[kind][metric]:,.1f}" for kind in rows) + " |")


if __name__ == "__main__":
    main()
