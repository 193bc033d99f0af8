"""Backpressure: however many jobs wait, a worker leases at most ``concurrency + prefetch`` of them, runs at
most ``concurrency`` at once, gives back the prefetched ones unrun on stop, and its memory does not grow
with the backlog. On memory and sqlite."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.jobs import Job, JobCatalog, JobStatus
from lssm_jobs.queue import JobQueue, open_queue
from lssm_jobs.testing import run_async, wait_until

CONCURRENCY = 4
PREFETCH = 3
FLOOD = 20_000


def _queue(kind: str, tmp_path: Path, **options: Any) -> JobQueue:
    settings: dict[str, Any] = {"sinks": [], "catalog": JobCatalog(), "poll_interval": 0.05, **options}
    if kind == "memory":
        return open_queue("memory", **settings)
    return open_queue("sqlite", path=tmp_path / "jobs.db", **settings)


def _total(counts: dict[str, dict[JobStatus, int]], status: JobStatus) -> int:
    return sum(per_queue.get(status, 0) for per_queue in counts.values())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@run_async(timeout=120)
async def test_a_flood_while_a_slow_worker_runs_stays_within_concurrency_plus_prefetch(
    kind: str, tmp_path: Path
) -> None:
    running = 0
    most_running = 0

    async def slow(job: Job[Any]) -> None:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        try:
            await asyncio.sleep(0.02)
        finally:
            running -= 1

    most_leased = 0
    async with _queue(kind, tmp_path, concurrency=CONCURRENCY, prefetch=PREFETCH, lease_ms=5_000) as queue:
        queue.register("slow", slow)
        await queue.start()

        async def watch() -> None:
            nonlocal most_leased
            while True:
                most_leased = max(most_leased, _total(await queue.counts(), JobStatus.ACTIVE))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        try:
            for _ in range(FLOOD // 2_000):  # the flood arrives while the worker runs
                await queue.enqueue_many([("slow", {}) for _ in range(2_000)])
                await asyncio.sleep(0.05)
            await wait_until(lambda: most_running >= CONCURRENCY, timeout=10, message="every slot in use")
            await asyncio.sleep(0.5)
        finally:
            watcher.cancel()
        await queue.stop()
        counts = await queue.counts()
    assert most_running == CONCURRENCY
    assert CONCURRENCY < most_leased <= CONCURRENCY + PREFETCH
    # The prefetched jobs that never started were given back at the stop; nothing was lost.
    assert _total(counts, JobStatus.ACTIVE) == 0
    assert _total(counts, JobStatus.PENDING) + _total(counts, JobStatus.COMPLETED) == FLOOD


@pytest.mark.slow
@run_async(timeout=120)
async def test_worker_memory_does_not_grow_with_the_backlog(tmp_path: Path) -> None:
    """20k jobs wait in a sqlite file; a slow worker runs for a while. Its Python allocations stay within a
    small bound: a worker that leased the backlog (or buffered it) would hold every job's body and record."""
    async with _queue("sqlite", tmp_path) as producer:
        for _ in range(FLOOD // 2_000):
            await producer.enqueue_many([("slow", {"padding": "x" * 200}) for _ in range(2_000)])
    done = 0

    async def slow(job: Job[Any]) -> None:
        nonlocal done
        await asyncio.sleep(0.01)
        done += 1

    async with _queue("sqlite", tmp_path, concurrency=8, prefetch=8, lease_ms=5_000) as queue:
        queue.register("slow", slow)
        gc.collect()
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            await queue.start()
            await wait_until(lambda: done >= 300, timeout=60, message="300 jobs done")
            _, peak = tracemalloc.get_traced_memory()
            await queue.stop()
        finally:
            tracemalloc.stop()
    # 20k leased jobs would take well over 10 MB here; a bounded worker stays far below.
    assert peak - baseline < 2_000_000, peak - baseline
