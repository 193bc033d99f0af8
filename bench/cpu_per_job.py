"""CPU time per job of lssm-jobs' own process, on Redis or the memory backend: the figure for comparing two
versions of the code on a shared machine.

    python bench/cpu_per_job.py [--backend redis|memory] [--rounds 3] [--stat best|median]
    python bench/cpu_per_job.py --backend memory --baseline /path/to/other/checkout

``run.py`` measures wall-clock rates, which on a machine shared with other work move by 2-3x between runs,
whatever the code does. This script measures what the code costs: the CPU time (``process_time``) this
process spends per job, in microseconds, on each of ``--paths``:

* ``single``: ``await queue.enqueue`` of ``--single`` jobs, one call at a time;
* ``single_sync``: the blocking facade's ``enqueue`` (``BlockingQueue``), ``--single`` jobs;
* ``bulk``: ``enqueue_many`` of ``--bulk`` jobs as ``(type, payload)`` pairs, ``--batch`` per call;
* ``drain``: ``--jobs`` jobs are enqueued, then one queue (an async no-op handler, concurrency 64) runs
  them; from ``start()`` until the backend counts none of them left to run.

Each path has a queue of its own; the enqueue paths send it one job before the clock starts (connections,
scripts). On Redis the server's own work is not counted (it runs in redis-server, a process this script
starts on a free loopback port). ``--retention`` sets the backend's ``completed_retention`` (seconds; 0:
completed jobs are deleted at once; default: the backend's).

Without ``--baseline`` every round runs in this process, and the best round of each figure (the least
disturbed one; ``--stat median`` for the median) is printed, with the files the lssm-jobs packages that ran
came from: to measure another version, put its ``core`` (and ``plugins/redis``) first on ``PYTHONPATH``.
With ``--baseline CHECKOUT`` each round runs in a fresh subprocess per checkout, alternating (the baseline,
with its ``core`` and ``plugins/redis`` first on ``PYTHONPATH``, then this one), so that both see the same
machine load; one line per checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lssm_jobs.backends.memory import MemoryBackend
from lssm_jobs.blocking import BlockingQueue
from lssm_jobs.jobs import JobCatalog, JobStatus, define_job_type
from lssm_jobs.queue import JobQueue, open_queue

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Server  # the harness's throwaway redis-server

CATALOG = JobCatalog()
NOOP = define_job_type(type="bench.noop", catalog=CATALOG)
PATHS = ("single", "single_sync", "bulk", "drain")
#: A job in one of these is still to run (or running).
LIVE = (JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.ACTIVE)

#: Makes a new queue: its name (a Redis key prefix) and queue options.
QueueMaker = Callable[..., JobQueue]


def _queue_maker(url: str | None, prefix: str, retention: float | None) -> QueueMaker:
    backend_options: dict[str, Any] = {} if retention is None else {"completed_retention": retention}

    def make(name: str, **options: Any) -> JobQueue:
        if url is None:
            return JobQueue(MemoryBackend(**backend_options), sinks=[], catalog=CATALOG, **options)
        return open_queue(
            "redis", url=url, prefix=prefix + name, sinks=[], catalog=CATALOG, **backend_options, **options
        )

    return make


async def _enqueue_batches(queue: JobQueue, count: int, batch: int) -> None:
    for start in range(0, count, batch):
        await queue.enqueue_many([(NOOP, {"t": 0.0}) for _ in range(min(batch, count - start))])


async def _single(make: QueueMaker, count: int) -> float:
    async with make("s:") as queue:
        await queue.enqueue(NOOP, {"t": 0.0})  # connections, scripts
        started = time.process_time()
        for _ in range(count):
            await queue.enqueue(NOOP, {"t": 0.0})
        return (time.process_time() - started) / count * 1e6


async def _bulk(make: QueueMaker, count: int, batch: int) -> float:
    async with make("b:") as queue:
        await queue.enqueue(NOOP, {"t": 0.0})
        started = time.process_time()
        await _enqueue_batches(queue, count, batch)
        return (time.process_time() - started) / count * 1e6


async def _drain(make: QueueMaker, count: int, batch: int) -> float:
    done = asyncio.Event()
    handled = 0

    async def noop(job: Any) -> None:
        nonlocal handled
        handled += 1
        if handled == count:
            done.set()

    async with make("d:", concurrency=64, poll_interval=0.05) as queue:
        queue.register(NOOP, noop)
        await _enqueue_batches(queue, count, batch)
        started = time.process_time()
        await queue.start()
        await asyncio.wait_for(done.wait(), 600)
        # Until the last acknowledgement: no job left to run. (Not "all counted completed": the memory
        # backend keeps at most 10,000 completed jobs, and none with --retention 0.)
        while True:
            per_status = (await queue.counts()).get("default", {})
            if not any(per_status.get(status, 0) for status in LIVE):
                break
            await asyncio.sleep(0.01)
        elapsed = time.process_time() - started
        await queue.stop()
    return elapsed / count * 1e6


def _single_sync(make: QueueMaker, count: int) -> float:
    with BlockingQueue(make("y:")) as blocking:
        blocking.enqueue(NOOP, {"t": 0.0})
        started = time.process_time()
        for _ in range(count):
            blocking.enqueue(NOOP, {"t": 0.0})
        return (time.process_time() - started) / count * 1e6


def _round(options: argparse.Namespace, url: str | None, prefix: str) -> dict[str, float]:
    """One round of every path asked for: microseconds of CPU per job, by ``<path>_us``."""
    make = _queue_maker(url, prefix, options.retention)

    async def async_paths() -> dict[str, float]:
        out: dict[str, float] = {}
        if "single" in options.paths:
            out["single_us"] = await _single(make, options.single)
        if "bulk" in options.paths:
            out["bulk_us"] = await _bulk(make, options.bulk, options.batch)
        if "drain" in options.paths:
            out["drain_us"] = await _drain(make, options.jobs, options.batch)
        return out

    figures = asyncio.run(async_paths())
    if "single_sync" in options.paths:
        figures["single_sync_us"] = _single_sync(make, options.single)
    return {key: round(value, 2) for key, value in figures.items()}


def _code() -> dict[str, str]:
    """Where the lssm-jobs packages this process ran were imported from."""
    modules = (sys.modules.get(name) for name in ("lssm_jobs", "lssm_jobs_redis"))
    return {module.__name__: str(module.__file__) for module in modules if module is not None}


def _child_round(url: str | None, prefix: str, env: dict[str, str]) -> dict[str, Any]:
    """One round in a fresh subprocess with ``env``: this script with the same options."""
    command = [sys.executable, __file__, *sys.argv[1:], "--child", "--prefix", prefix]
    run = subprocess.run(
        [*command, *(["--url", url] if url else [])], env=env, capture_output=True, text=True
    )
    if run.returncode != 0:
        raise SystemExit(f"a round failed ({' '.join(command)}):\n{run.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    return result


def _checkout_environment(checkout: Path) -> dict[str, str]:
    env = dict(os.environ)
    if not (checkout / "core" / "lssm_jobs").is_dir():
        raise SystemExit(f"--baseline {checkout}: no core/lssm_jobs there, not a checkout of lssm-jobs")
    paths = [str(path) for path in (checkout / "core", checkout / "plugins" / "redis") if path.is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, env.get("PYTHONPATH")]))
    return env


def _rounds(options: argparse.Namespace, url: str | None) -> dict[str, dict[str, Any]]:
    """Every round, by checkout: ``code`` (the packages that ran) and ``rounds`` (their figures)."""
    if options.baseline is None:
        rounds = [_round(options, url, f"cpu{number}:") for number in range(options.rounds)]
        return {"this checkout": {"code": _code(), "rounds": rounds}}
    environments = {"baseline": _checkout_environment(options.baseline), "this checkout": dict(os.environ)}
    runs: dict[str, dict[str, Any]] = {side: {"rounds": []} for side in environments}
    for number in range(options.rounds):
        for side, env in environments.items():
            result = _child_round(url, f"cpu{number}{side[0]}:", env)
            runs[side]["code"] = result["code"]
            runs[side]["rounds"].append(result["figures"])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("redis", "memory"), default="redis")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--single", type=int, default=2_000, help="jobs enqueued one call at a time")
    parser.add_argument("--bulk", type=int, default=20_000, help="jobs enqueued with enqueue_many")
    parser.add_argument("--batch", type=int, default=10_000, help="jobs per enqueue_many call")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs drained")
    parser.add_argument("--retention", type=float, help="the backend's completed_retention, in seconds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--stat", choices=("best", "median"), default="best", help="of the rounds, per figure"
    )
    parser.add_argument("--baseline", type=Path, help="another checkout of lssm-jobs, measured alternately")
    parser.add_argument("--redis-server", default=shutil.which("redis-server"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="cpu:", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    options = parser.parse_args()
    options.paths = [path.strip() for path in options.paths.split(",") if path.strip()]
    unknown = set(options.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    if options.child:
        figures = _round(options, options.url, options.prefix)
        print(json.dumps({"code": _code(), "figures": figures}))
        return
    with tempfile.TemporaryDirectory(prefix="lssm-cpu-") as temporary:
        server = Server(options.redis_server, Path(temporary)) if options.backend == "redis" else None
        try:
            runs = _rounds(options, server.url if server is not None else None)
        finally:
            if server is not None:
                server.stop()
    aggregate = min if options.stat == "best" else statistics.median
    for side, run in runs.items():
        rounds = run["rounds"]
        figures = {key: round(aggregate(each[key] for each in rounds), 2) for key in rounds[0]}
        print(json.dumps({"checkout": side, "code": run["code"], options.stat: figures, "rounds": rounds}))


if __name__ == "__main__":
    main()
