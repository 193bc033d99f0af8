"""``lssm-jobs job show`` and ``job cancel``, run as real subprocesses on a real sqlite file, with a worker
in another process: a cancel made by the CLI reaches the running job through the worker's poll."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.testing.helpers import wait_until_sync
from lssm_jobs.testing.processes import CliProcess, run_cli

APP = """
import asyncio

from lssm_jobs import define_job_type
from lssm_jobs.handlers import Handlers

handlers = Handlers()
summed = define_job_type(type="jobs.sum", result=int)


@handlers.register(summed)
async def add(job):
    return sum(job.payload["numbers"])


@handlers.register("jobs.crunch")
async def crunch(job):
    await job.progress(0.4, "page 4 of 10", rows=400)
    await asyncio.sleep(120)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "jobs_cli_app.py").write_text(textwrap.dedent(APP))
    return tmp_path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd)


def ok_json(*args: str, cwd: Path) -> Any:
    result = run(*args, "--json", cwd=cwd)
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)


def wait_for(check: Any, message: str, timeout: float = 30.0) -> Any:
    return wait_until_sync(check, timeout=timeout, interval=0.1, message=message)


def test_show_and_cancel_a_running_job_from_another_process(app_dir: Path) -> None:
    url = f"sqlite:///{app_dir / 'jobs.db'}"
    job = ok_json("enqueue", "jobs.crunch", "-p", '{"report": 7}', "--url", url, cwd=app_dir)
    shown = ok_json("job", "show", job["id"], "--url", url, cwd=app_dir)
    assert shown["status"] == "pending" and shown["payload"] == {"report": 7} and shown["attempts"] == 0
    assert shown["progress"] is None
    with CliProcess(
        [
            "worker",
            "jobs_cli_app:handlers",
            "--url",
            url,
            "--no-progress",
            "-o",
            "poll_interval=0.1",
            "-o",
            "cancel_poll_interval=0.2",
        ],
        cwd=app_dir,
    ) as worker:
        running = wait_for(
            lambda: (
                (data := ok_json("job", "show", job["id"], "--url", url, cwd=app_dir))["progress"] and data
            ),
            "the job's progress",
        )
        assert running["status"] == "active" and running["attempts"] == 1
        assert running["progress"]["fraction"] == 0.4
        assert running["progress"]["message"] == "page 4 of 10"
        assert running["progress"]["data"] == {"rows": 400}
        text = run("job", "show", job["id"], "--url", url, cwd=app_dir)
        assert text.returncode == 0 and "state:" in text.stdout and "active" in text.stdout
        assert "40% page 4 of 10" in text.stdout, text.stdout

        cancel = run("job", "cancel", job["id"], "--url", url, cwd=app_dir)
        assert cancel.returncode == 0 and "asked to stop" in cancel.stdout, cancel.stderr
        wait_for(
            lambda: ok_json("job", "show", job["id"], "--url", url, cwd=app_dir)["status"] == "cancelled",
            "the worker to stop the job",
            timeout=10,
        )
        assert worker.process.poll() is None, "the worker must keep running"
    ended = ok_json("job", "show", job["id"], "--url", url, cwd=app_dir)
    assert ended["attempts"] == 1 and ended["last_error"] is None and ended["progress"]["fraction"] == 0.4
    assert ok_json("job", "cancel", job["id"], "--url", url, cwd=app_dir) == {
        "id": job["id"],
        "result": "finished",
    }
    counts = ok_json("status", "--url", url, cwd=app_dir)
    assert counts == {"default": {"cancelled": 1}}


def test_show_prints_what_a_job_with_a_result_type_returned(app_dir: Path) -> None:
    url = f"sqlite:///{app_dir / 'jobs.db'}"
    job = ok_json("enqueue", "jobs.sum", "-p", '{"numbers": [1, 2, 3]}', "--url", url, cwd=app_dir)
    assert ok_json("job", "show", job["id"], "--url", url, cwd=app_dir)["result"] is None
    with CliProcess(
        ["worker", "jobs_cli_app:handlers", "--url", url, "--no-progress", "-o", "poll_interval=0.1"],
        cwd=app_dir,
    ):
        shown = wait_for(
            lambda: (
                (data := ok_json("job", "show", job["id"], "--url", url, cwd=app_dir))["status"] == "completed"
                and data
            ),
            "the job to complete",
        )
    assert shown["result"]["status"] == "completed" and shown["result"]["value"] == 6
    text = run("job", "show", job["id"], "--url", url, cwd=app_dir)
    assert text.returncode == 0 and any(
        line.startswith("result:") and line.split()[-1] == "6" for line in text.stdout.splitlines()
    ), text.stdout


def test_cancel_a_waiting_job(app_dir: Path) -> None:
    url = f"sqlite:///{app_dir / 'jobs.db'}"
    job = ok_json("enqueue", "jobs.crunch", "--delay-ms", "60000", "--url", url, cwd=app_dir)
    assert ok_json("job", "cancel", job["id"], "--url", url, cwd=app_dir)["result"] == "removed"
    text = run("job", "show", job["id"], "--url", url, cwd=app_dir)
    assert text.returncode == 0 and "cancelled" in text.stdout


@pytest.mark.parametrize("action", ["show", "cancel"])
def test_an_unknown_id_or_an_unreachable_backend_is_one_line(app_dir: Path, action: str) -> None:
    url = f"sqlite:///{app_dir / 'jobs.db'}"
    missing = run("job", action, "no-such-job", "--url", url, cwd=app_dir)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == ["lssm-jobs: error: no job with id no-such-job"]
    unreachable = run("job", action, "x", "--url", "sqlite:////no/such/dir/jobs.db", cwd=app_dir)
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1 and "error" in unreachable.stderr
