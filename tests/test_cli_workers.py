"""``lssm-jobs workers``: the live workers, as real subprocesses on a real sqlite file. Every worker process
of ``--processes N`` registers itself, a graceful stop removes its record, a SIGKILLed worker ages out, and
what the store holds is shown escaped."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.backends.base import WorkerInfo
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.queue import JobQueue
from lssm_jobs.testing import opened
from lssm_jobs.testing.processes import CliProcess, run_cli

APP = """
import asyncio

from lssm_jobs.handlers import Handlers

handlers = Handlers()


@handlers.register("live.work")
async def work(job):
    await asyncio.sleep(job.payload.get("seconds", 0))
"""

#: Seconds between heartbeats in these tests: a killed worker ages out after three of them.
BEAT = 0.3


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "live_workers_app.py").write_text(textwrap.dedent(APP))
    return tmp_path


def _url(cwd: Path) -> str:
    return f"sqlite:///{cwd / 'jobs.db'}"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd)


def listed(cwd: Path, url: str | None = None) -> list[dict[str, Any]]:
    result = run("workers", "--json", "--url", url or _url(cwd), cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    workers = json.loads(result.stdout)
    assert isinstance(workers, list)
    return workers


def poll(condition: Callable[[], Any], *, timeout: float = 30.0, what: str) -> Any:
    """Poll ``condition`` until it is truthy (each call runs a real command), within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


def _enqueue(cwd: Path, *payloads: dict[str, Any]) -> list[str]:
    """Enqueue ``live.work`` jobs into the test's database (in this process); their ids."""

    async def enqueue() -> list[str]:
        async with JobQueue(SqliteBackend(cwd / "jobs.db"), sinks=[]) as queue:
            jobs = await queue.enqueue_many([("live.work", payload) for payload in payloads])
        return [job.id for job in jobs]

    return asyncio.run(enqueue())


def _exactly(count: int, workers: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return workers if len(workers) == count else None


def _worker(cwd: Path, *flags: str) -> CliProcess:
    return CliProcess(
        [
            "worker",
            "live_workers_app:handlers",
            "--url",
            _url(cwd),
            "-o",
            f"worker_heartbeat={BEAT}",
            "-o",
            "poll_interval=0.1",
            *flags,
        ],
        cwd=cwd,
    )


def test_every_worker_process_registers_and_a_graceful_stop_removes_them(app_dir: Path) -> None:
    with _worker(app_dir, "--processes", "2", "--concurrency", "3", "--queues", "default,mail") as worker:
        worker.wait_for(r"is consuming", count=2, timeout=60)
        workers = poll(lambda: _exactly(2, listed(app_dir)), what="two live workers")
        pids = {entry["pid"] for entry in workers}
        assert len(pids) == 2 and worker.process.pid not in pids, "each worker process, not the supervisor"
        for entry in workers:
            assert entry["host"] == socket.gethostname()
            assert entry["queues"] == ["default", "mail"] and entry["concurrency"] == 3
            assert entry["id"].startswith(f"{entry['host']}-{entry['pid']}-")
        _enqueue(app_dir, *[{} for _ in range(10)])
        poll(
            lambda: sum(entry["jobs_done"] for entry in listed(app_dir)) == 10,
            what="the workers announcing the 10 jobs they did",
        )
        (slow,) = _enqueue(app_dir, {"seconds": 30})
        running = poll(
            lambda: [entry for entry in listed(app_dir) if slow in entry["current_jobs"]],
            what="a worker announcing the job it runs",
        )
        assert running[0]["in_flight"] == 1

        text = run("workers", "--url", _url(app_dir), cwd=app_dir)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].split() == ["worker", "host:pid", "queues", "running", "done", "up", "seen"]
        assert len(lines) == 3 and all(f":{pid}" in text.stdout for pid in pids)
        assert "1/3" in text.stdout and "default,mail" in text.stdout

        worker.signal(signal.SIGTERM)
        worker.signal(signal.SIGTERM)  # the second signal releases the 30 s job instead of waiting for it
        assert worker.wait(60) in (0, 130), worker.tail()
    assert listed(app_dir) == [], "a stopped worker must remove its record at once"


def test_a_killed_worker_ages_out(app_dir: Path) -> None:
    with _worker(app_dir) as worker:
        worker.wait_for(r"lssm-jobs worker:")
        entry = poll(lambda: listed(app_dir), what="the worker registered")[0]
        assert entry["pid"] == worker.process.pid
        worker.process.kill()
        worker.wait(30)
        killed_at = time.monotonic()
        poll(lambda: listed(app_dir) == [], timeout=10 * BEAT + 10, what="the killed worker aged out")
        # not removed at once: it was listed until its three heartbeats were missed
        assert time.monotonic() - killed_at > BEAT


def test_no_workers_and_a_backend_without_the_ability_are_one_line(app_dir: Path) -> None:
    empty = run("workers", "--url", _url(app_dir), cwd=app_dir)
    assert empty.returncode == 0 and empty.stdout == "(no live workers)\n"
    assert listed(app_dir) == []
    unsupported = run("workers", "--backend", "example-push", cwd=app_dir)
    assert unsupported.returncode == 1
    assert unsupported.stdout == ""
    assert unsupported.stderr.strip().splitlines() == [
        "lssm-jobs: error: the example-push backend does not keep a list of live workers "
        "(no worker_registry capability)"
    ]
    unreachable = run("workers", "--url", f"sqlite:///{app_dir / 'no-such-dir' / 'jobs.db'}", cwd=app_dir)
    assert unreachable.returncode == 1 and len(unreachable.stderr.strip().splitlines()) == 1
    assert "Traceback" not in unreachable.stderr
    bad = run("workers", "--jsn", cwd=app_dir)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_stored_worker_text_is_escaped(app_dir: Path) -> None:
    hostile = WorkerInfo(
        id="w-\x1b]0;owned\x07",
        host="evil\x1b[2J\nforged line",
        pid=1,
        queues=("q\r\n",),
        concurrency=1,
        started_at=time.time(),
        last_seen=time.time(),
    )

    async def register() -> None:
        async with opened(SqliteBackend(app_dir / "jobs.db")) as backend:
            await backend.register_worker(hostile, 60_000)

    asyncio.run(register())
    shown = run("workers", "--url", _url(app_dir), cwd=app_dir)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\r" not in shown.stdout
    assert len(shown.stdout.splitlines()) == 2, "a newline in a stored host must not forge a line"
    assert "evil\\x1b[2J\\nforged line:1" in shown.stdout
    assert listed(app_dir)[0]["host"] == hostile.host, "--json output is exact"
