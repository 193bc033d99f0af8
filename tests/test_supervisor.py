"""``lssm-jobs worker`` with several processes, recycling and the three-step stop, run as real subprocesses
on real sqlite files: no job is lost when a worker process is SIGKILLed, recycled or stopped mid-job."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lssm_jobs.queue import open_queue
from lssm_jobs.testing.processes import CliProcess

pytestmark = pytest.mark.slow

APP = """
import asyncio
import os

from lssm_jobs.handlers import Handlers

handlers = Handlers()


@handlers.register("ops.work")
async def work(job):
    await asyncio.sleep(job.payload.get("seconds", 0.01))
    marker = f"{job.id}-{job.attempt}-{os.getpid()}"
    open(os.path.join(os.environ["OPS_RUNS"], marker), "w").close()
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "ops_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "runs").mkdir()
    return tmp_path


def _db(app_dir: Path) -> str:
    return str(app_dir / "jobs.db")


def _url(app_dir: Path) -> str:
    return f"sqlite:///{_db(app_dir)}"


def enqueue(app_dir: Path, count: int, seconds: float) -> list[str]:
    async def go() -> list[str]:
        async with open_queue("sqlite", path=_db(app_dir), sinks=[]) as queue:
            jobs = await queue.enqueue_many([("ops.work", {"seconds": seconds}) for _ in range(count)])
            return [job.id for job in jobs]

    return asyncio.run(go())


def counts(app_dir: Path) -> dict[str, int]:
    async def go() -> dict[str, int]:
        async with open_queue("sqlite", path=_db(app_dir), sinks=[]) as queue:
            per = (await queue.counts()).get("default", {})
            return {status.value: n for status, n in per.items() if n}

    return asyncio.run(go())


def wait_counts(
    app_dir: Path, done: Callable[[dict[str, int]], bool], *, timeout: float = 60.0
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = counts(app_dir)
        if done(now):
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(f"counts never got there: {now}")
        time.sleep(0.1)


def worker(app_dir: Path, *flags: str) -> CliProcess:
    return CliProcess(
        ["worker", "ops_app:handlers", "--url", _url(app_dir), "-o", "poll_interval=0.2", *flags],
        cwd=app_dir,
        env={"OPS_RUNS": str(app_dir / "runs")},
    )


def _pid(line: str) -> int:
    match = re.search(r"pid (\d+)", line)
    assert match is not None, line
    return int(match.group(1))


def test_a_sigkilled_worker_process_is_restarted_and_no_job_is_lost(app_dir: Path) -> None:
    ids = enqueue(app_dir, 60, 0.4)
    with worker(app_dir, "--processes", "2", "-c", "4", "-o", "lease_ms=1500") as process:
        process.wait_for(r"is consuming", count=2)
        wait_counts(app_dir, lambda c: c.get("completed", 0) >= 8)
        victim = _pid(process.wait_for(r"started worker 0 \(pid \d+\)")[0])
        os.kill(victim, signal.SIGKILL)
        died = process.wait_for(rf"worker 0 \(pid {victim}\) died: killed by SIGKILL")[0]
        assert "restarting it in" in died
        restarted = process.wait_for(r"started worker 0 \(pid \d+\)", count=2)
        assert _pid(restarted[1]) != victim
        final = wait_counts(app_dir, lambda c: c.get("completed", 0) == 60, timeout=90)
        assert final == {"completed": 60}
        process.signal(signal.SIGTERM)
        assert process.wait(60) == 0, process.tail()
    ran = {name.split("-")[0] for name in os.listdir(app_dir / "runs")}
    assert ran == set(ids)
    retried = [name for name in os.listdir(app_dir / "runs") if name.split("-")[1] != "1"]
    assert retried, "the killed worker's jobs should have run again, as attempt 2"


def test_worker_processes_are_recycled_after_max_jobs(app_dir: Path) -> None:
    enqueue(app_dir, 20, 0.01)
    with worker(app_dir, "--processes", "1", "-c", "1", "--max-jobs", "5") as process:
        wait_counts(app_dir, lambda c: c.get("completed", 0) == 20)
        recycled = process.wait_for(r"recycled: it ran \d+ jobs \(--max-jobs 5\)", count=3)
        assert all("starting a new one" in line for line in recycled)
        process.signal(signal.SIGTERM)
        assert process.wait(60) == 0, process.tail()
        started = {_pid(line) for line in process.stderr if re.search(r"started worker 0 \(pid", line)}
    assert len(started) >= 4
    runs = os.listdir(app_dir / "runs")
    assert len(runs) == 20
    per_pid: dict[str, int] = {}
    for name in runs:
        pid = name.split("-")[2]
        per_pid[pid] = per_pid.get(pid, 0) + 1
    assert max(per_pid.values()) <= 5, per_pid  # concurrency 1: no process ran more than --max-jobs


def test_worker_processes_are_recycled_above_max_memory(app_dir: Path) -> None:
    enqueue(app_dir, 2, 0.01)
    with worker(app_dir, "--processes", "1", "--max-memory", "10MB") as process:
        line = process.wait_for(r"recycled: it uses .* of memory, above --max-memory 10.0 MiB")[0]
        assert "starting a new one" in line
        process.signal(signal.SIGTERM)
        assert process.wait(60) == 0, process.tail()


def test_sigterm_lets_in_flight_jobs_finish_in_every_process(app_dir: Path) -> None:
    enqueue(app_dir, 8, 1.5)
    with worker(app_dir, "--processes", "2", "-c", "4") as process:
        wait_counts(app_dir, lambda c: c.get("active", 0) == 8)
        process.signal(signal.SIGTERM)
        process.wait_for(r"SIGTERM received, draining 2 worker processes")
        assert process.wait(60) == 0, process.tail()
    assert counts(app_dir) == {"completed": 8}


def test_a_second_signal_stops_at_once_and_releases_running_jobs(app_dir: Path) -> None:
    enqueue(app_dir, 4, 60)
    with worker(app_dir, "--processes", "2", "-c", "2", "-o", "lease_ms=120000") as process:
        wait_counts(app_dir, lambda c: c.get("active", 0) == 4)
        process.signal(signal.SIGTERM)
        process.wait_for(r"draining 2 worker processes")
        started = time.monotonic()
        process.signal(signal.SIGINT)
        assert process.wait(30) == 130, process.tail()
        assert time.monotonic() - started < 15
    assert counts(app_dir) == {"pending": 4}  # released: ready again at once, not waiting for the lease


def test_single_process_second_signal_releases_running_jobs(app_dir: Path) -> None:
    enqueue(app_dir, 3, 60)
    with worker(app_dir, "-c", "3", "-o", "lease_ms=120000", "--no-progress") as process:
        wait_counts(app_dir, lambda c: c.get("active", 0) == 3)
        process.signal(signal.SIGTERM)
        process.wait_for(r"draining \(again to stop at once\)")
        process.signal(signal.SIGTERM)
        process.wait_for(r"releasing 3 running jobs")
        assert process.wait(30) == 130, process.tail()
    assert counts(app_dir) == {"pending": 3}


def test_processes_flag_rejects_bad_values_in_one_line(app_dir: Path) -> None:
    for flags in (
        ["--processes", "0"],
        ["--processes", "many"],
        ["--max-memory", "lots"],
        ["--max-jobs", "0"],
    ):
        with worker(app_dir, *flags) as process:
            assert process.wait(30) == 2
            errors = [line for line in process.stderr if line.strip()]
            assert len(errors[-1:]) == 1 and "error:" in errors[-1], process.tail()
            assert "Traceback" not in process.output
