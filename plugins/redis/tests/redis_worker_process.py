"""A worker process for the crash tests: ``python redis_worker_process.py URL PREFIX MARKERS LEASE_MS`` (see
:func:`lssm_jobs.testing.processes.run_crash_test_worker` for what its handler does)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from lssm_jobs.jobs import JobCatalog
from lssm_jobs.queue import open_queue
from lssm_jobs.testing.processes import run_crash_test_worker


async def main(url: str, prefix: str, markers: Path, lease_ms: int) -> None:
    queue = open_queue(
        "redis", url=url, prefix=prefix, sinks=[], catalog=JobCatalog(), lease_ms=lease_ms, poll_interval=0.2
    )
    await run_crash_test_worker(queue, markers)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])))
