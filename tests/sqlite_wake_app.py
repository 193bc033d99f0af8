"""The APP of the ``lssm-jobs worker`` processes in tests/test_sqlite_doorbell.py, and its producer.

    lssm-jobs worker sqlite_wake_app:handlers --url sqlite:///DB -o poll_interval=60   (RUNS_DIR in $WAKE_RUNS)
    python tests/sqlite_wake_app.py enqueue DB LABEL [LABEL...] [--sync]

A handler run is recorded as an empty file ``<label>.<worker pid>.<attempt>`` in ``$WAKE_RUNS`` (creating
it with "x" fails loudly on a second run of the same attempt). The producer enqueues one job per label, one
call at a time, through ``await queue.enqueue`` or (``--sync``) the blocking facade, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from lssm_jobs import Job
from lssm_jobs.blocking import open_blocking_queue
from lssm_jobs.handlers import Handlers
from lssm_jobs.queue import open_queue

RECORD = "wake.record"
handlers = Handlers()


@handlers.register(RECORD)
def record(job: Job[Any]) -> None:
    Path(os.environ["WAKE_RUNS"], f"{job.payload['label']}.{os.getpid()}.{job.attempt}").open("x").close()


async def enqueue(database: str, labels: list[str]) -> None:
    async with open_queue("sqlite", path=database, sinks=[]) as queue:
        for label in labels:
            await queue.enqueue(RECORD, {"label": label})


def enqueue_sync(database: str, labels: list[str]) -> None:
    queue = open_blocking_queue("sqlite", path=database, sinks=[])
    try:
        for label in labels:
            queue.enqueue(RECORD, {"label": label})
    finally:
        queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["enqueue"])
    parser.add_argument("database")
    parser.add_argument("labels", nargs="+")
    parser.add_argument("--sync", action="store_true")
    args = parser.parse_args()
    if args.sync:
        enqueue_sync(args.database, args.labels)
    else:
        asyncio.run(enqueue(args.database, args.labels))


if __name__ == "__main__":
    main()
