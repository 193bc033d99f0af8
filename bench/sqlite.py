"""lssm-jobs on its sqlite backend next to huey's ``SqliteHuey``: each library's worker in its own process,
started by the library's CLI, the producer in this one, on one database file per library.

    python bench/sqlite.py                     # both libraries, default sizes
    python bench/sqlite.py --libs lssm --jobs 5000 --latency 100

For each library, in this order, each on a fresh file:

1. idle latency: the worker is started and goes idle; ``--latency`` jobs are enqueued one at a time,
   ``--gap`` seconds apart; the delay from just before the enqueue call to the start of the handler
   (median, p99);
2. idle worker CPU: the same worker, idle for ``--idle`` seconds: its user + system CPU time over that
   window, as a percentage of one core (from /proc);
3. single enqueue (no worker running): ``--single`` jobs, one call at a time; lssm-jobs through
   ``await queue.enqueue`` (async) and the blocking facade ``open_blocking_queue(...).enqueue`` (sync);
4. bulk enqueue: ``--bulk`` jobs through ``enqueue_many``, 10,000 per call (huey has no bulk API);
5. drain: ``--jobs`` no-op jobs are enqueued with no worker running, then ONE worker process is started
   and drains them; jobs / (last handler finished - first handler started), measured in the worker.

lssm-jobs: ``lssm-jobs worker adapters.sqlite_lssm_app:handlers --url sqlite:///... --concurrency 64``,
an async no-op handler, default queue options (``poll_interval`` 1 s, the doorbell wakes it). huey:
``huey_consumer adapters.sqlite_huey_app.huey -w 8 -k thread``, polling every 10 ms without backoff
(``-d 0.01 -m 0.01``: huey's lowest-latency setting; its default backs off to 10 s between polls).

Durability differs by default: lssm-jobs commits with sqlite's ``synchronous=NORMAL`` (WAL: no fsync per
commit; survives a killed process), ``SqliteHuey`` with sqlite's default ``FULL`` (an fsync per commit).
The variants ``lssm_full`` (lssm-jobs with ``synchronous="full"``) and ``huey_nofsync`` (``SqliteHuey(...,
fsync=False)``: ``synchronous=OFF``) compare them at the other levels: ``--libs lssm,lssm_full,huey,huey_nofsync``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processes import BENCH, WorkerProcess, environment

BIN = Path(sys.executable).parent
LIBS = ("lssm", "huey")
#: Variants run only when asked for: the same library at another durability (``synchronous``) level.
VARIANTS = ("lssm_full", "huey_nofsync")
NAMES = {
    "lssm": "lssm-jobs (synchronous=NORMAL, the default)",
    "lssm_full": "lssm-jobs (synchronous=FULL)",
    "huey": "huey SqliteHuey (synchronous=FULL, its default)",
    "huey_nofsync": "huey SqliteHuey fsync=False (synchronous=OFF)",
}
CONCURRENCY = 64
HUEY_WORKERS = 8


class Worker(WorkerProcess):
    """A worker process started by its library's CLI, recording ``count`` jobs (see adapters/common.py)."""

    def __init__(self, lib: str, database: Path, mode: str, count: int, directory: Path) -> None:
        env = environment(
            BENCH_SQLITE_PATH=str(database), BENCH_HUEY_FSYNC="0" if lib == "huey_nofsync" else ""
        )
        if lib.startswith("lssm"):
            command = [
                str(BIN / "lssm-jobs"),
                "worker",
                "adapters.sqlite_lssm_app:handlers",
                "--url",
                f"sqlite:///{database}",
                "--concurrency",
                str(CONCURRENCY),
                "--no-progress",
                *(["-o", "synchronous=full"] if lib == "lssm_full" else []),
            ]
        else:
            command = [
                str(BIN / "huey_consumer"),
                "adapters.sqlite_huey_app.huey",
                "-w",
                str(HUEY_WORKERS),
                "-k",
                "thread",
                "-d",
                "0.01",
                "-m",
                "0.01",
                "-n",
            ]
        super().__init__(command, env, lib, mode, count, directory)


# -- producers ---------------------------------------------------------------------------------------------


class LssmProducer:
    def __init__(self, database: Path, synchronous: str = "normal") -> None:
        from lssm_jobs.blocking import open_blocking_queue
        from lssm_jobs.queue import open_queue

        self.runner = asyncio.Runner()
        self.queue = open_queue("sqlite", path=database, sinks=[], synchronous=synchronous)
        self.runner.run(self.queue.open())
        self.blocking = open_blocking_queue("sqlite", path=database, sinks=[], synchronous=synchronous)

    def single(self, count: int) -> None:
        async def go() -> None:
            for _ in range(count):
                await self.queue.enqueue("bench.noop", {"t": 0.0})

        self.runner.run(go())

    def single_sync(self, count: int) -> None:
        for _ in range(count):
            self.blocking.enqueue("bench.noop", {"t": 0.0})

    def stamped(self) -> None:
        async def go() -> None:
            await self.queue.enqueue("bench.noop", {"t": time.time()})

        self.runner.run(go())

    def warm_up(self) -> None:
        self.runner.run(self.queue.enqueue("bench.noop", {"t": -1.0}))

    def bulk(self, count: int) -> None:
        async def go() -> None:
            for start in range(0, count, 10_000):
                size = min(10_000, count - start)
                await self.queue.enqueue_many([("bench.noop", {"t": 0.0})] * size)

        self.runner.run(go())

    def close(self) -> None:
        self.blocking.close()
        self.runner.run(self.queue.close())
        self.runner.close()


class HueyProducer:
    def __init__(self, database: Path, fsync: bool | None = None) -> None:
        os.environ["BENCH_SQLITE_PATH"] = str(database)
        os.environ["BENCH_HUEY_FSYNC"] = "" if fsync is None else str(int(fsync))
        sys.modules.pop("adapters.sqlite_huey_app", None)  # a new SqliteHuey on this file
        module = importlib.import_module("adapters.sqlite_huey_app")
        self.noop: Callable[[float], Any] = module.noop

    def single(self, count: int) -> None:
        for _ in range(count):
            self.noop(0.0)

    single_sync = single

    def stamped(self) -> None:
        self.noop(time.time())

    def warm_up(self) -> None:
        self.noop(-1.0)

    def bulk(self, count: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _producer(lib: str, database: Path) -> LssmProducer | HueyProducer:
    if lib.startswith("lssm"):
        return LssmProducer(database, "full" if lib == "lssm_full" else "normal")
    return HueyProducer(database, False if lib == "huey_nofsync" else None)


def _rate(count: int, action: Callable[[int], None]) -> float:
    started = time.perf_counter()
    action(count)
    return count / (time.perf_counter() - started)


def measure(lib: str, options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"lib": lib}
    lssm = lib.startswith("lssm")
    distribution = "lssm-jobs" if lssm else "huey"
    out["version"] = importlib.metadata.version(distribution)

    # 1, 2: idle latency and idle CPU, on a fresh file.
    database = directory / f"{lib}-latency.db"
    producer = _producer(lib, database)
    worker = Worker(lib, database, "latency", options.latency, directory)
    try:
        time.sleep(0.5)  # let the worker start polling before the warm-up job exists
        producer.warm_up()
        worker.wait_for(worker.ready, 60)
        time.sleep(0.3)
        for _ in range(options.latency):
            producer.stamped()
            time.sleep(options.gap)
        latencies = sorted(1000 * value for value in worker.wait_result(60)["latencies"])
        out["latency_median_ms"] = statistics.median(latencies)
        out["latency_p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        time.sleep(0.5)
        before, started = worker.cpu_seconds(), time.monotonic()
        time.sleep(options.idle)
        out["idle_cpu_percent"] = 100 * (worker.cpu_seconds() - before) / (time.monotonic() - started)
    finally:
        worker.stop()
        producer.close()

    # 3, 4: single and bulk enqueue, no worker.
    database = directory / f"{lib}-enqueue.db"
    producer = _producer(lib, database)
    try:
        producer.single(100)  # warm-up: connections, statement caches, imports
        out["single_async_per_s"] = _rate(options.single, producer.single) if lssm else None
        producer.single_sync(100)
        out["single_sync_per_s"] = _rate(options.single, producer.single_sync)
        out["bulk_per_s"] = _rate(options.bulk, producer.bulk) if lssm else None
    finally:
        producer.close()

    # 5: drain with one worker process.
    database = directory / f"{lib}-drain.db"
    producer = _producer(lib, database)
    try:
        (producer.bulk if lssm else producer.single)(options.jobs)
    finally:
        producer.close()
    worker = Worker(lib, database, "drain", options.jobs, directory)
    try:
        result = worker.wait_result(max(120, options.jobs / 100))
        out["drain_per_s"] = result["seen"] / max(result["last"] - result["first"], 1e-9)
    finally:
        worker.stop()
    return out


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def report(results: list[dict[str, Any]], options: argparse.Namespace) -> str:
    lines = [
        f"sqlite benchmark: drain {options.jobs:,} jobs, single {options.single:,}, bulk {options.bulk:,}, "
        f"latency {options.latency} jobs {options.gap * 1000:.0f} ms apart, idle CPU over {options.idle:.0f} s",
        "",
        "| library | idle latency median / p99 (ms) | single enqueue/s (async, sync) | bulk enqueue/s "
        "| drain jobs/s (1 worker process) | idle worker CPU (% of a core) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        name = NAMES[r["lib"]]
        single = (
            f"{_fmt(r['single_async_per_s'])}, {_fmt(r['single_sync_per_s'])}"
            if r["single_async_per_s"] is not None
            else f"{_fmt(r['single_sync_per_s'])} (sync)"
        )
        lines.append(
            f"| {name} {r['version']} | {r['latency_median_ms']:.2f} / {r['latency_p99_ms']:.2f} | {single} "
            f"| {_fmt(r['bulk_per_s'])} | {_fmt(r['drain_per_s'])} | {r['idle_cpu_percent']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--libs", default=",".join(LIBS), help=f"comma-separated, of {', '.join(LIBS + VARIANTS)}"
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs drained by one worker process")
    parser.add_argument("--single", type=int, default=3_000, help="jobs enqueued one call at a time")
    parser.add_argument("--bulk", type=int, default=50_000, help="jobs enqueued with enqueue_many")
    parser.add_argument("--latency", type=int, default=200, help="jobs enqueued to an idle worker")
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between latency jobs")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds the idle worker's CPU is measured")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    options = parser.parse_args()
    sys.path.insert(0, str(BENCH))
    libs = [lib.strip() for lib in options.libs.split(",") if lib.strip()]
    unknown = set(libs) - set(LIBS + VARIANTS)
    if unknown:
        parser.error(f"unknown libraries: {sorted(unknown)}")
    directory = Path(tempfile.mkdtemp(prefix="lssm-sqlite-bench-"))
    results = []
    try:
        for lib in libs:
            if lib.startswith("huey") and shutil.which("huey_consumer", path=str(BIN)) is None:
                print("huey is not installed (pip install huey); skipped", file=sys.stderr)
                continue
            results.append(measure(lib, options, directory))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(report(results, options))
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
