"""A scheduler process for tests/test_scheduler_processes.py, written against the public API only.

    python tests/scheduler_procs.py DB RUNS_DIR --name i1 --until EPOCH_SECONDS

Runs a :class:`JobScheduler` on the sqlite queue in DB (so it uses the sqlite scheduler store in the same
file) with two every-second schedules, until EPOCH_SECONDS or SIGTERM:

* ``beat`` calls a function that records its tick as an empty file ``beat.<tick>.<name>`` in RUNS_DIR;
* ``sync`` enqueues a ``procs.sync`` job per tick; each fired tick is recorded as ``sync.<tick>.<name>``.

``ready.<name>`` (holding the time the scheduler started) is written once it runs, and ``done.<name>``
(holding how many times it checked for due ticks) when it has stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

from lssm_jobs.events import Event, ScheduleFired
from lssm_jobs.queue import open_queue
from lssm_jobs.scheduler import JobScheduler, current_tick, tick_key


async def main(database: str, runs: Path, name: str, until: float) -> None:
    queue = open_queue("sqlite", path=database, sinks=())
    scheduler = JobScheduler(queue, instance_id=name, misfire="all")
    checks = 0

    def beat() -> None:
        tick = current_tick()
        assert tick is not None
        (runs / f"beat.{tick_key(tick.timestamp())}.{name}").open("x").close()

    def on_event(event: Event) -> None:
        nonlocal checks
        if isinstance(event, ScheduleFired) and event.schedule == "sync":
            (runs / f"sync.{tick_key(event.tick)}.{name}").open("x").close()
        elif event.name == "scheduler.tick":
            checks += 1

    scheduler.schedule("beat", "* * * * * *", beat)
    scheduler.schedule("sync", "every 1s", job="procs.sync", payload={})
    scheduler.on("*", on_event)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.call_later(max(0.0, until - time.time()), stopping.set)
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
    arguments = parser.parse_args()
    asyncio.run(main(arguments.database, arguments.runs, arguments.name, arguments.until))
