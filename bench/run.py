"""Throughput and latency of lssm-jobs next to its peers, on one redis-server this script starts itself.

    python bench/run.py                       # every library that imports, default sizes
    python bench/run.py --libs lssm,arq --jobs 5000 --markdown results.md
    python bench/run.py --libs lssm --signing      # lssm-jobs with and without signed envelopes

For each library, on the same server (flushed in between), in this order:

1. single enqueue: jobs enqueued one call at a time (each waits for its reply);
2. bulk enqueue: the library's bulk API, when it has one;
3. drain: ``--jobs`` no-op jobs are enqueued (bulk when possible), then ONE worker process drains them;
   the rate is jobs / (last job finished - first job started), measured inside the worker. The Redis
   memory used by the queued jobs (INFO used_memory delta, extrapolated to one million) and the Redis
   commands per job (INFO commandstats delta, enqueue and drain separately) are measured on the way;
4. idle latency: with a worker running and idle, one job at a time is enqueued (``--gap`` apart) and
   the delay from just before the enqueue call to the start of the handler is recorded (median, p99).

Each library runs in its own subprocess, its worker in another. lssm-jobs runs in this interpreter, which
``nox -s bench`` installs the way a user does (``pip install lssm-jobs-redis``: its default dependencies,
nothing added); the peers come from bench/requirements.txt, in a virtualenv of their own when
``--peers-python`` names one (their pins do not change what lssm-jobs is measured with). Any library that
is not installed is reported and skipped. The versions of redis-py and hiredis printed are lssm-jobs'.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from processes import BENCH, WorkerProcess, environment

LIBS = ("lssm", "rq", "huey", "dramatiq", "arq", "taskiq", "saq")
#: Variants run only when asked for (``--signing`` adds ``lssm_signed`` after ``lssm``).
VARIANTS = ("lssm_signed",)
HARNESS_COMMANDS = {"info", "config|resetstat", "config", "flushall", "ping", "client|setinfo", "hello"}


# -- the server ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A throwaway redis-server: no persistence, loopback only."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--logfile",
                str(directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


# -- one library, in its own process ---------------------------------------------------------------------


def _environment(url: str, **extra: str) -> dict[str, str]:
    return environment(BENCH_REDIS_URL=url, **extra)


def _commands(client: Any) -> dict[str, int]:
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    return {name: count for name, count in calls.items() if name not in HARNESS_COMMANDS}


class Worker(WorkerProcess):
    """A worker subprocess of this script (``--role worker``) for one library, on the server at ``url``."""

    poll_interval = 0.02
    stop_timeout = 10.0

    def __init__(self, lib: str, url: str, mode: str, count: int, directory: Path) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--role", "worker", "--libs", lib]
        super().__init__(command, _environment(url), lib, mode, count, directory)


def measure(lib: str, url: str, options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    module = importlib.import_module(f"adapters.lib_{lib}")
    adapter = module.Adapter()
    out: dict[str, Any] = {"lib": lib, "name": adapter.name, "notes": adapter.notes}
    try:
        out["version"] = importlib.metadata.version(adapter.distribution)
    except importlib.metadata.PackageNotFoundError:
        out["version"] = "?"
    try:
        client.flushall()
        adapter.enqueue_single([0.0] * 100)  # warm-up: connections, scripts, imports
        client.flushall()
        started = time.perf_counter()
        adapter.enqueue_single([0.0] * options.single)
        out["single_per_s"] = options.single / (time.perf_counter() - started)
        client.flushall()
        out["single_sync_per_s"] = None
        if adapter.enqueue_single_sync([0.0] * 100):
            client.flushall()
            started = time.perf_counter()
            adapter.enqueue_single_sync([0.0] * options.single)
            out["single_sync_per_s"] = options.single / (time.perf_counter() - started)

        client.flushall()
        started = time.perf_counter()
        bulk = adapter.enqueue_bulk([0.0] * options.bulk)
        out["bulk_per_s"] = options.bulk / (time.perf_counter() - started) if bulk else None

        client.flushall()
        memory_before = int(client.info("memory")["used_memory"])
        client.config_resetstat()
        (adapter.enqueue_bulk if bulk else adapter.enqueue_single)([0.0] * options.jobs)
        enqueue_commands = _commands(client)
        out["memory_mb_per_million"] = (
            (int(client.info("memory")["used_memory"]) - memory_before) / options.jobs * 1_000_000 / 2**20
        )
        client.config_resetstat()
        worker = Worker(lib, url, "drain", options.jobs, directory)
        try:
            result = worker.wait_result(options.timeout)
        finally:
            worker.stop()
        drain_commands = _commands(client)
        out["drain_per_s"] = options.jobs / max(result["last"] - result["first"], 1e-9)
        out["commands_enqueue_per_job"] = sum(enqueue_commands.values()) / options.jobs
        out["commands_drain_per_job"] = sum(drain_commands.values()) / options.jobs
        out["commands_enqueue"] = enqueue_commands
        out["commands_drain"] = drain_commands

        client.flushall()
        worker = Worker(lib, url, "latency", options.latency, directory)
        try:
            deadline = time.monotonic() + 60
            while not worker.ready.exists():
                if time.monotonic() > deadline or worker.process.poll() is not None:
                    raise RuntimeError(f"worker never ran a warm-up job: {worker.tail()}")
                adapter.enqueue_single([-1.0])
                time.sleep(0.05)
            time.sleep(1.0)  # let it go idle: the warm-up jobs are done, nothing is queued
            for _ in range(options.latency):
                adapter.enqueue_stamped()
                time.sleep(options.gap)
            result = worker.wait_result(options.timeout)
        finally:
            worker.stop()
        latencies = sorted(value * 1000 for value in result["latencies"])
        out["latency_median_ms"] = statistics.median(latencies)
        out["latency_p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    finally:
        adapter.close()
        client.close()
    return out


# -- lssm-jobs worker --processes N: drain throughput of a supervisor's worker processes ----------------


def measure_processes(
    url: str, counts: list[int], options: argparse.Namespace, directory: Path
) -> list[dict[str, Any]]:
    """Drain ``--jobs`` no-op jobs with ``lssm-jobs worker --processes N`` for each N, on one Redis.

    The workers start first and go idle (every process consuming), then the jobs are enqueued in bulk; the
    rate is jobs / (last job finished - first job started) over all processes, from what each process
    recorded (adapters/lssm_processes_app.py).
    """
    import asyncio

    import redis
    from lssm_jobs.jobs import JobStatus
    from lssm_jobs.queue import open_queue
    from lssm_jobs.testing.processes import CliProcess

    client = redis.Redis.from_url(url)
    results = []
    for processes in counts:
        client.flushall()
        results_dir = directory / f"processes-{processes}"
        results_dir.mkdir(exist_ok=True)
        command = [
            "worker",
            "adapters.lssm_processes_app:handlers",
            "--backend",
            "redis",
            "--url",
            url,
            "-o",
            "prefix=bench:",
            "-o",
            "sinks=[]",
            "--processes",
            str(processes),
            "-c",
            os.environ.get("BENCH_LSSM_CONCURRENCY", "64"),
            "--no-progress",
        ]
        with CliProcess(command, cwd=BENCH, env={"BENCH_RESULT_DIR": str(results_dir)}) as worker:
            worker.wait_for(r"is consuming", count=processes, timeout=120)
            time.sleep(1.0)  # idle: blocked waiting for work

            async def fill_and_wait() -> None:
                queue = open_queue("redis", url=url, prefix="bench:", sinks=[])
                async with queue:
                    for start in range(0, options.jobs, 10_000):
                        size = min(10_000, options.jobs - start)
                        await queue.enqueue_many([("bench.noop", {"t": 0.0}) for _ in range(size)])
                    deadline = time.monotonic() + options.timeout
                    while True:
                        per = (await queue.counts()).get("default", {})
                        if per.get(JobStatus.COMPLETED, 0) >= options.jobs:
                            return
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"not drained in {options.timeout}s: {per}")
                        await asyncio.sleep(0.05)

            asyncio.run(fill_and_wait())
            worker.signal(signal.SIGTERM)
            worker.wait(60)
        records = [json.loads(path.read_text()) for path in results_dir.glob("*.json")]
        records = [record for record in records if record["seen"]]
        first = min(record["first"] for record in records)
        last = max(record["last"] for record in records)
        results.append(
            {
                "processes": processes,
                "drain_per_s": options.jobs / max(last - first, 1e-9),
                "per_process": sorted((record["seen"] for record in records), reverse=True),
            }
        )
        print(f"   --processes {processes}: drain {results[-1]['drain_per_s']:,.0f}/s", flush=True)
    client.close()
    return results


def processes_table(results: list[dict[str, Any]]) -> str:
    lines = ["| `lssm-jobs worker` | drain jobs/s | jobs per worker process |", "| --- | ---: | --- |"]
    for result in results:
        lines.append(
            f"| `--processes {result['processes']}` | {_number(result['drain_per_s'])} | "
            f"{', '.join(f'{n:,}' for n in result['per_process'])} |"
        )
    return "\n".join(lines)


# -- reporting -------------------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _single(result: dict[str, Any]) -> str:
    """Single enqueue; for an asyncio library with a synchronous producer API too, both."""
    if result.get("single_sync_per_s") is None:
        return _number(result["single_per_s"])
    return f"{_number(result['single_per_s'])} async, {_number(result['single_sync_per_s'])} sync"


def table(results: list[dict[str, Any]]) -> str:
    header = (
        "| library | drain jobs/s (1 worker) | single enqueue/s | bulk enqueue/s | idle latency median / p99 "
        "(ms) | Redis commands per job (enqueue + drain) | MB per 1M queued jobs |"
    )
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['lib']} | failed: {result['error'][:80]} | | | | | |")
            continue
        lines.append(
            f"| {result['name']} {result['version']} | {_number(result['drain_per_s'])} | "
            f"{_single(result)} | {_number(result['bulk_per_s'])} | "
            f"{_number(result['latency_median_ms'], 2)} / {_number(result['latency_p99_ms'], 2)} | "
            f"{_number(result['commands_enqueue_per_job'], 1)} + {_number(result['commands_drain_per_job'], 1)} | "
            f"{_number(result['memory_mb_per_million'])} |"
        )
    return "\n".join(lines)


def machine(server_binary: str) -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    server = subprocess.run([server_binary, "--version"], capture_output=True, text=True).stdout.strip()
    versions = {}
    for name in ("redis", "hiredis"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": f"{cpu} ({os.cpu_count()} cores)",
        "python": platform.python_version(),
        "os": platform.platform(),
        "redis-server": server,
        "redis-py": versions["redis"],
        "hiredis": versions["hiredis"],
    }


# -- entry point -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--libs", default=",".join(LIBS), help=f"comma-separated, of {', '.join(LIBS)}")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs drained by one worker")
    parser.add_argument("--single", type=int, default=5_000, help="jobs enqueued one at a time")
    parser.add_argument("--bulk", type=int, default=50_000, help="jobs enqueued in bulk")
    parser.add_argument("--latency", type=int, default=300, help="jobs timed for idle latency")
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between latency jobs")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a worker may take")
    parser.add_argument("--redis-server", default=shutil.which("redis-server"), help="redis-server binary")
    parser.add_argument(
        "--signing",
        action="store_true",
        help="also run lssm-jobs with signed envelopes (lssm_signed), next to lssm: the cost of signing",
    )
    parser.add_argument(
        "--peers-python",
        help="the Python (of another virtualenv) that runs the peer libraries; lssm-jobs always runs in this "
        "one, installed as its users install it (what `nox -s bench` does)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the results table (markdown) here")
    parser.add_argument("--json", type=Path, help="also write every measurement as JSON here")
    parser.add_argument(
        "--processes",
        help="instead: drain --jobs with `lssm-jobs worker --processes N` for each N, e.g. 1,2",
    )
    parser.add_argument("--role", choices=("main", "lib", "worker"), default="main", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    sys.path.insert(0, str(BENCH))

    if options.role == "worker":
        module = importlib.import_module(f"adapters.lib_{options.libs}")
        module.Adapter().run_worker()
        return 0
    if options.role == "lib":
        assert options.out is not None
        result = measure(options.libs, options.url, options, options.out.parent)
        options.out.write_text(json.dumps(result))
        return 0

    if not options.redis_server:
        print("redis-server not found: install it (apt-get install redis-server) or pass --redis-server")
        return 2
    if options.processes:
        counts = [int(part) for part in options.processes.split(",") if part.strip()]
        with tempfile.TemporaryDirectory(prefix="lssm-bench-") as temporary:
            server = Server(options.redis_server, Path(temporary))
            try:
                print(
                    f"-- lssm-jobs worker --processes {options.processes} ({options.jobs} jobs)", flush=True
                )
                measured = measure_processes(server.url, counts, options, Path(temporary))
            finally:
                server.stop()
        info = machine(options.redis_server)
        report = processes_table(measured)
        print("\n" + "\n".join(f"{key}: {value}" for key, value in info.items()) + "\n\n" + report)
        if options.markdown:
            options.markdown.write_text(report + "\n")
        if options.json:
            options.json.write_text(json.dumps({"machine": info, "processes": measured}, indent=2))
        return 0
    libs = [name.strip() for name in options.libs.split(",") if name.strip()]
    if options.signing and "lssm_signed" not in libs:
        libs.insert(libs.index("lssm") + 1 if "lssm" in libs else 0, "lssm_signed")
    unknown = set(libs) - set(LIBS) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lssm-bench-") as temporary:
        directory = Path(temporary)
        server = Server(options.redis_server, directory)
        try:
            for lib in libs:
                out = directory / f"{lib}.json"
                print(f"-- {lib} ...", flush=True)
                python = sys.executable
                if options.peers_python and not lib.startswith("lssm"):
                    python = options.peers_python
                command = [
                    python,
                    str(Path(__file__).resolve()),
                    "--role",
                    "lib",
                    "--libs",
                    lib,
                    "--url",
                    server.url,
                    "--out",
                    str(out),
                    "--jobs",
                    str(options.jobs),
                    "--single",
                    str(options.single),
                    "--bulk",
                    str(options.bulk),
                    "--latency",
                    str(options.latency),
                    "--gap",
                    str(options.gap),
                    "--timeout",
                    str(options.timeout),
                ]
                run = subprocess.run(command, env=_environment(server.url), capture_output=True, text=True)
                if run.returncode != 0 or not out.exists():
                    error = (run.stderr or run.stdout).strip().splitlines()
                    message = error[-1] if error else f"exit {run.returncode}"
                    print(f"   skipped: {message}")
                    results.append({"lib": lib, "error": message})
                    continue
                result = json.loads(out.read_text())
                results.append(result)
                print(
                    f"   drain {result['drain_per_s']:,.0f}/s, single {_single(result)}/s, "
                    f"bulk {_number(result['bulk_per_s'])}/s, "
                    f"latency {result['latency_median_ms']:.2f} ms",
                    flush=True,
                )
        finally:
            server.stop()
    info = machine(options.redis_server)
    print()
    for key, value in info.items():
        print(f"{key}: {value}")
    print()
    report = table(results)
    print(report)
    print()
    for result in results:
        if "error" not in result:
            print(f"- {result['name']}: {result['notes']}")
    if options.markdown:
        notes = "\n".join(f"- {r['name']}: {r['notes']}" for r in results if "error" not in r)
        machine_lines = "\n".join(f"- {key}: {value}" for key, value in info.items())
        options.markdown.write_text(f"{machine_lines}\n\n{report}\n\n{notes}\n")
    if options.json:
        options.json.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
