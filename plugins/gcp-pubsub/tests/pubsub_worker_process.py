"""A worker process for the crash test: ``python pubsub_worker_process.py ADDRESS PREFIX LEDGER MARKERS`` (see
:func:`lssm_jobs.testing.processes.run_crash_test_worker` for what its handler does)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from lssm_jobs.jobs import JobCatalog
from lssm_jobs.queue import open_queue
from lssm_jobs.testing.processes import run_crash_test_worker


async def main(address: str, prefix: str, ledger: str, markers: Path) -> None:
    queue = open_queue(
        "gcp-pubsub",
        project="lssm-test",
        prefix=prefix,
        emulator_host=address,
        ledger=ledger,
        queues=["default"],
        sinks=[],
        catalog=JobCatalog(),
        lease_ms=2_000,
        # A killed worker's job comes back after about this long (the stream's ack deadline), not 60 s.
        lease_extension_s=10,
    )
    await run_crash_test_worker(queue, markers)


if __name__ == "__main__":
    # Its log goes to a file the test shows when the job does not come back (what the worker saw, claimed).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
