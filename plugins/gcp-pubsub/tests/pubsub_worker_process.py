"""A worker process for the crash test: ``python pubsub_worker_process.py ADDRESS PREFIX LEDGER MARKERS``.

Its handler writes ``MARKERS/started-<job id>-<attempt>`` when a job starts; on the first attempt it then
hangs (so the test can SIGKILL the process mid-job), on later attempts it writes ``done-<id>``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from lssm_jobs.jobs import JobCatalog
from lssm_jobs.queue import open_queue


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
    )

    async def handler(job: Any) -> None:
        (markers / f"started-{job.id}-{job.attempt}").touch()
        if job.attempt == 1:
            await asyncio.sleep(3600)
        (markers / f"done-{job.id}").touch()

    queue.register("crash.test", handler)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with queue:
        await queue.run(stop)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
