"""Failures that must lose no job: a worker SIGKILLed mid-job, and a Redis restart (append-only file on)
while a producer and a worker run."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import open_queue
from lssm_jobs.testing import run_async, wait_until

WORKER = Path(__file__).with_name("redis_worker_process.py")


def _worker(url: str, prefix: str, markers: Path, lease_ms: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, prefix, str(markers), str(lease_ms)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@run_async(timeout=90)
async def test_a_job_whose_worker_is_killed_completes_in_another_worker(
    redis_server: Any, unique_prefix: Any, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    queue = open_queue("redis", url=redis_server.url, prefix=prefix, sinks=[], catalog=JobCatalog())
    async with queue:
        job = await queue.enqueue("crash.test", {})
        first = _worker(redis_server.url, prefix, tmp_path, 600)
        second: subprocess.Popen[bytes] | None = None
        try:
            await wait_until(
                lambda: (tmp_path / f"started-{job.id}-1").exists() or first.poll() is not None,
                timeout=30,
                message="the job started in the first worker",
            )
            assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
            first.send_signal(signal.SIGKILL)  # no graceful stop, no release: the lease must expire
            first.wait(10)
            running = await queue.get(job.id)
            assert running is not None and running.status is JobStatus.ACTIVE
            second = _worker(redis_server.url, prefix, tmp_path, 600)
            await wait_until(
                lambda: (tmp_path / f"done-{job.id}").exists(), timeout=30, message="job completed"
            )
            done = await wait_until(lambda: _completed(queue, job.id), message="job recorded as completed")
            assert done.attempt == 2
            assert (tmp_path / f"started-{job.id}-2").exists()
        finally:
            for process in (first, second):
                if process is not None:
                    _stop(process)


async def _completed(queue: Any, job_id: str) -> Any:
    job = await queue.get(job_id)
    return job if job is not None and job.status is JobStatus.COMPLETED else None


@run_async(timeout=120)
async def test_redis_restart_loses_no_job(own_redis_server: Any, unique_prefix: Any) -> None:
    """Redis (appendonly yes, appendfsync always) is killed and restarted twice while a producer enqueues
    one job at a time and a worker runs them: every job the producer was told is stored completes."""
    prefix = unique_prefix()
    total = 300
    handled: set[int] = set()
    settings: dict[str, Any] = {
        "url": own_redis_server.url,
        "prefix": prefix,
        "sinks": [],
        "catalog": JobCatalog(),
        "reconnect_timeout": 30.0,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
    }
    worker = open_queue("redis", concurrency=8, lease_ms=2_000, poll_interval=0.5, **settings)
    producer = open_queue("redis", **settings)
    worker.register("restart.test", lambda job: handled.add(job.payload["n"]))
    enqueued: list[str] = []

    async def produce() -> None:
        for n in range(total):
            job = await producer.enqueue("restart.test", {"n": n})
            enqueued.append(job.id)
            await asyncio.sleep(0.005)

    async with worker, producer:
        await worker.start()
        producing = asyncio.create_task(produce())
        for restart in (total // 3, 2 * total // 3):
            await wait_until(lambda restart=restart: len(enqueued) >= restart, timeout=60, message="enqueued")
            await asyncio.to_thread(own_redis_server.restart, kill=True)
        await asyncio.wait_for(producing, 60)
        await wait_until(lambda: len(handled) == total, timeout=60, message=f"all {total} jobs handled")

        async def all_completed() -> Any:
            counts = (await producer.counts())["default"]
            return (
                counts[JobStatus.COMPLETED] == total
                and counts[JobStatus.PENDING] == counts[JobStatus.ACTIVE] == 0
            )

        await wait_until(all_completed, timeout=30, message=f"all {total} jobs recorded as completed")
    assert len(set(enqueued)) == total
