"""``lssm-jobs worker APP -b gcp-tasks --port P`` as a real process: a job whose worker is SIGKILLed mid-run is
delivered again by the emulator and runs again (attempt 2) on the next worker; SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.testing.helpers import wait_until_sync

APP = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    from lssm_jobs.handlers import Handlers

    handlers = Handlers()
    MARKS = Path(os.environ["MARKS"])

    @handlers.register("crash.job")
    def run(job):
        with MARKS.open("a") as marks:
            marks.write(f"{job.attempt} {os.getpid()}\\n")
        if job.attempt == 1:
            time.sleep(60)  # killed meanwhile
    """
)


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until_sync(predicate, timeout=timeout, interval=0.05, message=what)


def test_killed_worker_job_comes_back(gcp_tasks_factory: Callable[..., Any], tmp_path: Path) -> None:
    import asyncio

    from lssm_jobs.queue import JobQueue

    backend = gcp_tasks_factory()
    (tmp_path / "crash_app.py").write_text(APP)
    marks = tmp_path / "marks.txt"
    options = {
        "project": backend.project,
        "location": backend.location,
        "url": backend.url,
        "ledger": "sqlite",
        "ledger_options": {"path": backend.ledger.path},
        "queue_prefix": backend.names.prefix,
        "create_queues": True,
        "api_endpoint": backend._api_endpoint,
        "insecure": True,
        "oidc_service_account": backend.oidc_service_account,
        "oidc_certs_url": backend.oidc_certs_url,
        "lease_ms": 1000,
    }
    env = {
        **os.environ,
        "MARKS": str(marks),
        "LSSM_JOBS_OPTIONS": json.dumps(options),
        "PYTHONPATH": str(tmp_path),
    }
    command = [
        sys.executable,
        "-m",
        "lssm_jobs.cli",
        "worker",
        "crash_app:handlers",
        "-b",
        "gcp-tasks",
        "--bind",
        "127.0.0.1",
        "--port",
        str(backend.port),
        "--no-progress",
    ]

    async def enqueue() -> str:
        async with JobQueue(gcp_tasks_factory(), sinks=[]) as queue:
            return (await queue.enqueue("crash.job", {}, max_retries=0)).id

    first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        job_id = asyncio.run(enqueue())
        _wait(lambda: marks.exists() and marks.read_text().strip(), 30, "first attempt started")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        try:
            lines = _wait(
                lambda: len(marks.read_text().split("\n")) > 2 and marks.read_text().split("\n"),
                30,
                "second attempt",
            )
            assert [line.split()[0] for line in lines if line] == ["1", "2"]

            async def status() -> Any:
                async with JobQueue(gcp_tasks_factory(), sinks=[]) as queue:
                    job = await queue.get(job_id)
                    return job.status.value if job else None

            # max_retries=0 and still run again: a killed worker is not a failure of the job (poison grace)
            assert _wait(lambda: asyncio.run(status()) == "completed", 15, "completed")
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
            assert "draining" in (second.stderr.read() if second.stderr else "")
        finally:
            if second.poll() is None:
                second.kill()
                second.wait(5)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)


def test_worker_flags_belong_to_their_backend(tmp_path: Path) -> None:
    (tmp_path / "crash_app.py").write_text(APP)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lssm_jobs.cli",
            "worker",
            "crash_app:handlers",
            "-b",
            "sqlite",
            "--port",
            "9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "MARKS": str(tmp_path / "m"), "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "--port is not an option of backend 'sqlite'" in result.stderr


pytestmark = pytest.mark.slow
