"""The operations commands (``queue purge``, ``schedules``, ``top``) and ``--json`` on every command, run
as real subprocesses on real sqlite files."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from lssm_jobs.cli import build_parser
from lssm_jobs.testing.processes import CliProcess, run_cli

APP = """
import os

from lssm_jobs.handlers import Handlers
from lssm_jobs.queue import open_queue
from lssm_jobs.scheduler import JobScheduler

handlers = Handlers()


@handlers.register("ops.greet")
async def greet(job):
    if job.payload.get("name") == "nobody":
        raise ValueError("nobody to greet")


queue = open_queue("sqlite", path=os.environ["OPS_DB"], sinks=[])
queue.include(handlers)
scheduler = JobScheduler(queue)
scheduler.schedule("nightly", "0 3 * * *", job="ops.greet", payload={"name": "night"})
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "ops_cli_app.py").write_text(textwrap.dedent(APP))
    return tmp_path


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, stdin=stdin, env={"OPS_DB": str(cwd / "jobs.db")})


def ok_json(*args: str, cwd: Path) -> object:
    result = run(*args, cwd=cwd)
    assert result.returncode == 0, (args, result.stderr)
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def _url(cwd: Path) -> str:
    return f"sqlite:///{cwd / 'jobs.db'}"


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                children = _subcommands(sub, f"{prefix}{name} ")
                found.update(children or {f"{prefix}{name}": sub})
    return found


def test_every_command_takes_json() -> None:
    missing = [
        command
        for command, parser in _subcommands(build_parser()).items()
        if not any("--json" in action.option_strings for action in parser._actions)
    ]
    assert not missing, missing


def test_every_command_json_output_parses(app_dir: Path) -> None:
    url = _url(app_dir)
    job = ok_json("enqueue", "ops.greet", "-p", '{"name": "nobody"}', "--json", "--url", url, cwd=app_dir)
    assert isinstance(job, dict) and job["status"] == "pending"
    # a worker with JSON progress lines: the job fails for good (4 attempts) and is dead-lettered
    with CliProcess(
        ["worker", "ops_cli_app:handlers", "--url", url, "--json", "-o", "poll_interval=0.1"],
        cwd=app_dir,
        env={"OPS_DB": str(app_dir / "jobs.db")},
    ) as worker:
        worker.wait_for(r"lssm-jobs worker:")
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.tail()
    assert worker.stdout and all(isinstance(json.loads(line), dict) for line in worker.stdout)

    assert isinstance(ok_json("status", "--json", "--url", url, cwd=app_dir), dict)
    assert isinstance(ok_json("dlq", "list", "--json", "--url", url, cwd=app_dir), list)
    assert isinstance(ok_json("plugins", "--json", cwd=app_dir), dict)
    schema = ok_json("schema", "--json", cwd=app_dir)
    assert isinstance(schema, dict) and "CREATE TABLE" in str(schema["schema"])
    assert ok_json("queue", "purge", "default", "--yes", "--json", "--url", url, cwd=app_dir) == {
        "queue": "default",
        "purged": 1,
    }
    assert ok_json("workers", "--json", "--url", url, cwd=app_dir) == []
    view = ok_json("top", "--once", "--json", "--interval", "0.2", "--url", url, cwd=app_dir)
    assert isinstance(view, dict) and "queues" in view
    app = ["--app", "ops_cli_app:scheduler"]
    listed = ok_json("schedules", "list", "--json", *app, cwd=app_dir)
    assert isinstance(listed, list) and listed[0]["name"] == "nightly"
    assert ok_json("schedules", "pause", "nightly", "--json", *app, cwd=app_dir) == {
        "schedule": "nightly",
        "paused": True,
    }
    assert ok_json("schedules", "resume", "nightly", "--json", *app, cwd=app_dir) == {
        "schedule": "nightly",
        "paused": False,
    }
    triggered = ok_json("schedules", "trigger", "nightly", "--json", *app, cwd=app_dir)
    assert isinstance(triggered, dict) and len(str(triggered["job_id"])) == 32
    dead = run("dlq", "list", "--json", "--url", url, cwd=app_dir)
    letters = json.loads(dead.stdout)
    if letters:  # the worker may have been stopped before the last retry; both outcomes are valid here
        shown = ok_json("dlq", "show", letters[0]["id"], "--json", "--url", url, cwd=app_dir)
        assert isinstance(shown, dict) and "nobody" in str(shown["envelope"])
        assert ok_json("dlq", "replay", letters[0]["id"], "--json", "--url", url, cwd=app_dir) == {
            "replayed": 1,
            "missing": [],
        }
    assert ok_json("dlq", "purge", "--all", "--json", "--url", url, cwd=app_dir) == {"purged": 0}
    with CliProcess(
        ["scheduler", "ops_cli_app:scheduler", "--json"],
        cwd=app_dir,
        env={"OPS_DB": str(app_dir / "jobs.db")},
    ) as scheduler:
        scheduler.wait_for(r"lssm-jobs scheduler:")
        scheduler.signal(signal.SIGTERM)
        assert scheduler.wait(60) == 0, scheduler.tail()
    assert all(isinstance(json.loads(line), dict) for line in scheduler.stdout)


def test_demo_json_summary(tmp_path: Path) -> None:
    summary = ok_json("demo", "--json", "--jobs", "20", "--path", str(tmp_path / "demo.db"), cwd=tmp_path)
    assert isinstance(summary, dict) and summary["dead_lettered"] == 1


def test_queue_purge_deletes_waiting_jobs_of_one_queue(app_dir: Path) -> None:
    url = _url(app_dir)
    for args in (["--queue", "mail"], ["--queue", "mail"], ["--queue", "mail", "--delay-ms", "60000"], []):
        assert run("enqueue", "ops.greet", "-p", "{}", *args, "--url", url, cwd=app_dir).returncode == 0
    refused = run("queue", "purge", "mail", "--url", url, cwd=app_dir, stdin="")
    assert refused.returncode == 2 and "needs --yes" in refused.stderr
    purged = run("queue", "purge", "mail", "--yes", "--url", url, cwd=app_dir)
    assert purged.returncode == 0 and purged.stdout.strip() == "purged 3 jobs from queue mail"
    assert ok_json("status", "--json", "--url", url, cwd=app_dir) == {"default": {"pending": 1}}


def test_schedules_against_the_store(app_dir: Path) -> None:
    url = _url(app_dir)
    assert run("schedules", "list", "--url", url, cwd=app_dir).stdout.strip() == "(no schedules)"
    app = ["--app", "ops_cli_app:scheduler"]
    assert run("schedules", "pause", "nightly", *app, cwd=app_dir).stdout.strip() == "paused nightly"
    stored = ok_json("schedules", "list", "--json", "--url", url, cwd=app_dir)
    assert isinstance(stored, list) and stored[0]["name"] == "nightly" and stored[0]["paused"] is True
    assert stored[0]["target"] is None  # the store knows when, not what: --app adds the definition
    text = run("schedules", "list", *app, cwd=app_dir).stdout
    assert "nightly" in text and "paused" in text and "job ops.greet" in text
    assert run("schedules", "resume", "nightly", "--url", url, cwd=app_dir).returncode == 0
    assert ok_json("schedules", "list", "--json", "--url", url, cwd=app_dir)[0]["paused"] is False  # type: ignore[index]
    missing = run("schedules", "pause", "nope", "--url", url, cwd=app_dir)
    assert missing.returncode == 1 and "no schedule named 'nope'" in missing.stderr
    triggered = run("schedules", "trigger", "nightly", *app, cwd=app_dir)
    assert triggered.returncode == 0 and "enqueued job" in triggered.stdout
    assert ok_json("status", "--json", "--url", url, cwd=app_dir) == {"default": {"pending": 1}}


def test_top_shows_every_queue(app_dir: Path) -> None:
    url = _url(app_dir)
    for queue in ("mail", "reports"):
        assert (
            run("enqueue", "ops.greet", "-p", "{}", "--queue", queue, "--url", url, cwd=app_dir).returncode
            == 0
        )
    result = run("top", "--once", "--interval", "0.1", "--url", url, cwd=app_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("lssm-jobs top")
    assert any(line.split()[:1] == ["mail"] for line in lines)
    assert any(line.split()[:1] == ["all"] and line.split()[-3] == "2" for line in lines), lines


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["queue", "purge"], 2, "NAME"),
        (["queue", "purge", "x", "--url", "sqlite:///jobs.db"], 2, "needs --yes"),
        (["schedules", "trigger", "nightly", "--url", "sqlite:///jobs.db"], 2, "needs --app"),
        (["schedules", "pause"], 2, "NAME"),
        (["top", "--interval", "0"], 2, "between"),
        (["top", "--once", "--metrics-url", "http://127.0.0.1:9/metrics"], 1, "cannot read metrics"),
        (["worker", "ops_cli_app:handlers", "--queues", "a=x"], 2, "weight"),
        (["worker", "ops_cli_app:handlers", "--strict"], 2, "--strict needs --queues"),
        (["worker", "ops_cli_app:handlers", "--metrics-port", "99999"], 2, "0..65535"),
        (["status", "--url", "sqlite:////no/such/dir/jobs.db"], 1, "error:"),
        (["--log-format", "xml", "status"], 2, "invalid choice"),
    ],
)
def test_bad_arguments_give_one_line(app_dir: Path, args: list[str], code: int, says: str) -> None:
    result = run(*args, cwd=app_dir, stdin="")
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "error" in last and says in result.stderr, result.stderr


def test_an_endpoint_port_in_use_is_one_line(app_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for extra in ([], ["--processes", "2"]):
            args = ["worker", "ops_cli_app:handlers", "--url", _url(app_dir), "--health-port", port, *extra]
            result = run(*args, cwd=app_dir)
            assert result.returncode == 2, result.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
