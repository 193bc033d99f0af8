"""The lssm-jobs command line, run as a real subprocess on real sqlite files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lssm_jobs.testing.processes import CLI, run_cli

APP = """
from lssm_jobs.handlers import Handlers
from lssm_jobs import define_job_type, PermanentJobError
import attrs

@attrs.frozen
class Greeting:
    name: str

GREET = define_job_type(type="cli.greet", payload=Greeting)
handlers = Handlers()

@handlers.register(GREET)
async def greet(job):
    if job.payload.name == "nobody":
        raise PermanentJobError("nobody to greet")
"""


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, timeout=timeout)


def status(cwd: Path, url: str) -> dict[str, dict[str, int]]:
    result = run("status", "--json", "--url", url, cwd=cwd)
    assert result.returncode == 0, result.stderr
    data: dict[str, dict[str, int]] = json.loads(result.stdout)
    return data


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cli_app.py").write_text(textwrap.dedent(APP))
    return tmp_path


def test_bad_arguments_give_one_error_line_and_no_traceback(tmp_path: Path) -> None:
    for args, code in [
        (["worker"], 2),
        (["enqueue", "x", "--payload", "{nope"], 2),
        (["status", "--backend", "nosuch"], 1),
        (["worker", "no_such_module:app"], 2),
        (["dlq", "replay"], 2),
        (["enqueue", "x", "--delay-ms", "-1"], 2),
    ]:
        result = run(*args, cwd=tmp_path)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert "error:" in result.stderr, args


def test_enqueue_with_validation_status_and_dlq(app_dir: Path) -> None:
    url = f"sqlite:///{app_dir / 'jobs.db'}"
    bad = run(
        "enqueue",
        "cli.greet",
        "--payload",
        '{"name": 5}',
        "--app",
        "cli_app:handlers",
        "--url",
        url,
        cwd=app_dir,
    )
    assert bad.returncode == 1 and "$.name" in bad.stderr and "Traceback" not in bad.stderr
    good = run("enqueue", "cli.greet", "--payload", '{"name": "Ada"}', "--url", url, cwd=app_dir)
    assert good.returncode == 0, good.stderr
    job = json.loads(good.stdout)
    assert job["status"] == "pending"
    assert status(app_dir, url) == {"default": {"pending": 1}}
    empty = run("dlq", "list", "--url", url, cwd=app_dir)
    assert empty.returncode == 0 and "empty" in empty.stdout


def test_worker_runs_jobs_and_drains_on_sigterm(app_dir: Path) -> None:
    url = f"sqlite:///{app_dir / 'jobs.db'}"
    for name in ("Ada", "Grace", "nobody"):
        assert (
            run(
                "enqueue", "cli.greet", "--payload", json.dumps({"name": name}), "--url", url, cwd=app_dir
            ).returncode
            == 0
        )
    stderr = _run_until(
        app_dir,
        ["worker", "cli_app:handlers", "--url", url, "-c", "2"],
        url,
        lambda counts: counts.get("completed") == 2 and counts.get("dead") == 1,
    )
    assert "draining" in stderr

    listing = run("dlq", "list", "--json", "--url", url, cwd=app_dir)
    dead = json.loads(listing.stdout)
    assert len(dead) == 1 and "permanent" in dead[0]["reason"]
    shown = run("dlq", "show", dead[0]["id"], "--url", url, cwd=app_dir)
    assert "PermanentJobError" in shown.stdout and '"name":"nobody"' in shown.stdout
    missing = run("dlq", "show", "0" * 32, "--url", url, cwd=app_dir)
    assert missing.returncode == 1 and "no dead letter" in missing.stderr
    assert "replayed 1" in run("dlq", "replay", dead[0]["id"], "--url", url, cwd=app_dir).stdout
    assert status(app_dir, url)["default"].get("pending") == 1
    assert run("dlq", "purge", "--all", "--url", url, cwd=app_dir).stdout.startswith("purged 0")


def test_schema_command(tmp_path: Path) -> None:
    sql = run("schema", "--format", "sql", "--dialect", "postgresql", cwd=tmp_path)
    assert sql.returncode == 0 and "CREATE TABLE" in sql.stdout and "lssm_jobs" in sql.stdout
    prisma = run("schema", "--format", "prisma", cwd=tmp_path)
    assert prisma.returncode == 0 and "model " in prisma.stdout


def test_demo_runs_on_sqlite_and_keeps_the_database(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    result = run("demo", "--path", str(database), "--keep", "--jobs", "40", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary" in result.stdout and "dead-lettered   1" in result.stdout
    assert "rejected at enqueue" in result.stdout
    assert database.exists()
    counts = status(tmp_path, f"sqlite:///{database}")
    assert counts["billing"]["dead"] == 1


SCHEDULED_APP = """
import os
from lssm_jobs.queue import open_queue
from lssm_jobs.scheduler import JobScheduler

queue = open_queue("sqlite", path=os.environ["LSSM_TEST_DB"], sinks=[])

@queue.register("cli.tick")
async def tick(job):
    return None

scheduler = JobScheduler(queue)
scheduler.schedule("every-second", "* * * * * *", job="cli.tick", payload={})
"""


def _run_until(app_dir: Path, args: list[str], url: str, done: Callable[[dict[str, int]], bool]) -> str:
    env = {**os.environ, "PYTHONPATH": str(app_dir), "LSSM_TEST_DB": str(app_dir / "jobs.db")}
    process = subprocess.Popen(
        [*CLI, *args, "--no-progress"],
        cwd=app_dir,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (app_dir / "jobs.db").exists() and done(status(app_dir, url).get("default", {})):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"{args[0]} did not get there: {status(app_dir, url)}")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    return stderr


def test_scheduler_command_enqueues_each_tick(tmp_path: Path) -> None:
    (tmp_path / "cli_sched.py").write_text(textwrap.dedent(SCHEDULED_APP))
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    stderr = _run_until(
        tmp_path, ["scheduler", "cli_sched:scheduler"], url, lambda counts: counts.get("pending", 0) >= 2
    )
    assert "1 schedules" in stderr


def test_worker_with_scheduler_runs_the_ticks_it_enqueues(tmp_path: Path) -> None:
    (tmp_path / "cli_sched.py").write_text(textwrap.dedent(SCHEDULED_APP))
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    stderr = _run_until(
        tmp_path,
        ["worker", "cli_sched:queue", "--with-scheduler"],
        url,
        lambda counts: counts.get("completed", 0) >= 2,
    )
    assert "scheduler with 1 schedules" in stderr
