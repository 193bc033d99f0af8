"""A scheduler process for tests/test_scheduler_processes.py, written against the public API only.

    python tests/scheduler_procs.py DB RUNS_DIR --name i1 --until EPOCH_SECONDS
        [--schedules beat,sync] [--claim-timeout SECONDS] [--die-in beat|sync]

Runs a :class:`JobScheduler` on the sqlite queue in DB (so it uses the sqlite scheduler store in the same
file) with two every-second schedules, until EPOCH_SECONDS or SIGTERM:

* ``beat`` calls a function that records its tick as an empty file ``beat.<tick>.<name>`` in RUNS_DIR;
* ``sync`` enqueues a ``procs.sync`` job per tick, its payload built per tick by a function; each fired tick
  is recorded as ``sync.<tick>.<name>``.

``--schedules`` picks which of the two this process defines. ``--die-in beat`` makes the process SIGKILL
itself in its first ``beat`` run, before recording the tick (a crash after the claim, while the callable
runs); ``--die-in sync`` makes it SIGKILL itself while building its first ``sync`` payload (a crash after
the claim and before the enqueue).

``ready.<name>`` (holding the time the scheduler started) is written once it runs, and ``done.<name>``
(holding how many times it checked for due ticks) when it has stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from lssm_jobs.events import Event, ScheduleFired
from lssm_jobs.queue import open_queue
from lssm_jobs.scheduler import JobScheduler, current_tick, tick_key


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(arguments: argparse.Namespace) -> None:
    runs: Path = arguments.runs
    name: str = arguments.name
    queue = open_queue("sqlite", path=arguments.database, sinks=())
    options: dict[str, Any] = {}
    if arguments.claim_timeout is not None:
        options["claim_timeout"] = arguments.claim_timeout
    scheduler = JobScheduler(queue, instance_id=name, misfire="all", **options)
    checks = 0

    def beat() -> None:
        tick = current_tick()
        assert tick is not None
        if arguments.die_in == "beat":
            _die()
        (runs / f"beat.{tick_key(tick.timestamp())}.{name}").open("x").close()

    def sync_payload(tick: datetime) -> dict[str, str]:
        if arguments.die_in == "sync":
            _die()
        return {"tick": tick.isoformat()}

    def on_event(event: Event) -> None:
        nonlocal checks
        if isinstance(event, ScheduleFired) and event.schedule == "sync":
            (runs / f"sync.{tick_key(event.tick)}.{name}").open("x").close()
        elif event.name == "scheduler.tick":
            checks += 1

    schedules = arguments.schedules.split(",")
    if "beat" in schedules:
        scheduler.schedule("beat", "* * * * * *", beat)
    if "sync" in schedules:
        scheduler.schedule("sync", "every 1s", job="procs.sync", payload=sync_payload)
    scheduler.on("*", on_event)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.call_later(max(0.0, arguments.until - time.time()), stopping.set)
    await scheduler.start()
    (runs / f"ready.{name}").write_text(repr(time.time()))
    await stopping.wait()
    await scheduler.stop()
    await queue.close()
    (runs / f"done.{name}").write_text(str(checks))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("runs", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--until", type=float, required=True)
    parser.add_argument("--schedules", default="beat,sync")
    parser.add_argument("--claim-timeout", type=float, default=None)
    parser.add_argument("--die-in", choices=("beat", "sync"), default=None)
    asyncio.run(main(parser.parse_args()))
