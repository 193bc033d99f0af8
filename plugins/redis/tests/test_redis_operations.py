"""Operating workers on Redis (real redis-server): credentials never reach a log line or a worker
process's command line, readiness follows Redis going away and coming back, and ``queue purge``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lssm_jobs.testing.processes import CliProcess, http_json

PASSWORD = "s3cret-Pa55"

APP = """
from lssm_jobs import JobOptions, define_job_type
from lssm_jobs.handlers import Handlers

handlers = Handlers()
FLAKY = define_job_type(type="ops.flaky", options=JobOptions(max_retries=1, backoff_ms=50, jitter=0.0))


@handlers.register(FLAKY)
async def flaky(job):
    raise RuntimeError(f"failed on attempt {job.attempt}")
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "redis_ops_app.py").write_text(textwrap.dedent(APP))
    return tmp_path


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lssm_jobs.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(cwd), **(env or {})},
    )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_credential_in_any_log_line_or_worker_command_line(
    own_redis_server: object, app_dir: Path, log_format: str
) -> None:
    server = own_redis_server
    with server.client() as client:  # type: ignore[attr-defined]
        client.config_set("requirepass", PASSWORD)
    url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"  # type: ignore[attr-defined]
    flags = ["--backend", "redis", "--url", url]
    enqueued = _cli("enqueue", "ops.flaky", "--app", "redis_ops_app:handlers", *flags, cwd=app_dir)
    assert enqueued.returncode == 0, enqueued.stderr
    global_args = ("--log-level", "DEBUG", "--log-format", log_format)
    command = ["worker", "redis_ops_app:handlers", *flags, "--processes", "2", "--health-port", "0"]
    with CliProcess(command, cwd=app_dir, global_args=global_args) as worker:
        worker.wait_for(r"is consuming", count=2)
        worker.wait_for(r"job.dead_lettered")
        pids = [int(p) for p in re.findall(r"started worker \d \(pid (\d+)\)", worker.output)]
        for pid in pids:  # backend settings reach the worker processes through the environment
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                assert PASSWORD.encode() not in cmdline.read()
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.tail()
    output = worker.output
    assert "job.retrying" in output and "job.dead_lettered" in output
    assert PASSWORD not in output
    if log_format == "json":
        assert all(json.loads(line) for line in worker.stderr if line.strip())

    wrong = f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0"  # type: ignore[attr-defined]
    failed = _cli("--log-level", "DEBUG", "status", "--backend", "redis", "--url", wrong, cwd=app_dir)
    assert failed.returncode == 1 and "error:" in failed.stderr
    assert PASSWORD not in failed.stderr + failed.stdout and "Traceback" not in failed.stderr


def test_readiness_follows_redis(own_redis_server: object, app_dir: Path) -> None:
    server = own_redis_server
    url = server.url  # type: ignore[attr-defined]
    command = ["worker", "redis_ops_app:handlers", "--backend", "redis", "--url", url, "--no-progress"]
    with CliProcess([*command, "--health-port", "0"], cwd=app_dir) as worker:
        base = worker.served_url("/readyz").removesuffix("/readyz")

        def ready_status(expected: int) -> dict[str, object]:
            deadline = time.monotonic() + 30
            while True:
                status, body = http_json(base + "/readyz", timeout=15)
                if status == expected:
                    return body  # type: ignore[no-any-return]
                assert time.monotonic() < deadline, body
                time.sleep(0.2)

        ready_status(200)
        server.stop()  # type: ignore[attr-defined]
        body = ready_status(503)
        assert "backend" in str(body["checks"])
        assert http_json(base + "/livez")[0] == 200  # alive: it waits for Redis, nothing to restart
        server.start()  # type: ignore[attr-defined]
        ready_status(200)
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.tail()


def test_queue_purge_on_redis(redis_server: object, app_dir: Path, unique_prefix: object) -> None:
    prefix = unique_prefix()  # type: ignore[operator]
    flags = ["--backend", "redis", "--url", redis_server.url, "-o", f"prefix={prefix}"]  # type: ignore[attr-defined]
    for extra in ([], [], ["--delay-ms", "60000"], ["--queue", "other"]):
        assert _cli("enqueue", "ops.flaky", *extra, *flags, cwd=app_dir).returncode == 0
    purged = _cli("queue", "purge", "default", "--yes", "--json", *flags, cwd=app_dir)
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout) == {"queue": "default", "purged": 3}
    status = json.loads(_cli("status", "--json", *flags, cwd=app_dir).stdout)
    assert status["other"]["pending"] == 1 and status["default"]["pending"] == 0


def test_live_workers_on_redis_with_processes(redis_server: object, app_dir: Path, unique_prefix: object) -> None:
    """Each worker process of ``--processes 2`` registers in Redis; one SIGKILLed ages out while the
    supervisor's replacement registers; a graceful stop removes them all."""
    prefix = unique_prefix()  # type: ignore[operator]
    flags = ["--backend", "redis", "--url", redis_server.url, "-o", f"prefix={prefix}"]  # type: ignore[attr-defined]

    def listed() -> list[dict[str, object]]:
        result = _cli("workers", "--json", *flags, cwd=app_dir)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        workers = json.loads(result.stdout)
        assert isinstance(workers, list)
        return workers

    def pids_become(wanted: Callable[[set[int]], bool], what: str) -> set[int]:
        deadline = time.monotonic() + 60
        while True:
            pids = {int(str(entry["pid"])) for entry in listed()}
            if wanted(pids):
                return pids
            assert time.monotonic() < deadline, f"{what}: live workers {pids}"
            time.sleep(0.1)

    command = ["worker", "redis_ops_app:handlers", *flags, "--processes", "2", "-o", "worker_heartbeat=0.3"]
    with CliProcess(command, cwd=app_dir) as worker:
        worker.wait_for(r"is consuming", count=2, timeout=60)
        first = pids_become(lambda pids: len(pids) == 2, "two worker processes registered")
        assert worker.process.pid not in first
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        worker.wait_for(r"is consuming", count=3, timeout=60)  # the supervisor's replacement
        after = pids_become(
            lambda pids: len(pids) == 2 and victim not in pids, "the killed worker aged out, its successor in"
        )
        assert (first - {victim}) < after
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.tail()
    assert listed() == []
