"""The CLI's text output escapes control characters from stored data (error text, tracebacks, queue and
type names), so a newline cannot forge a line and an escape sequence cannot drive the terminal; ``--json``
output stays exact. Run as a real subprocess on a sqlite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.jobs import Job, JobCatalog
from lssm_jobs.queue import open_queue
from lssm_jobs.testing import wait_until

CLI = Callable[..., subprocess.CompletedProcess[str]]
HOSTILE = "boom\nabc123  2026-01-01 00:00:00 UTC  fake.job  [default]  attempts=1  forged line\x1b[2J\r\u2028"
CONTROL = ("\x1b", "\r", "\u2028")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.db"

    def hostile(job: Job[Any]) -> None:
        raise RuntimeError(HOSTILE)

    async def prepare() -> None:
        async with open_queue(
            "sqlite", path=path, sinks=[], catalog=JobCatalog(), poll_interval=0.05, queues=["default"]
        ) as queue:
            queue.register("report", hostile)
            job = await queue.enqueue("report", {}, max_retries=0)
            await queue.enqueue("waiting", {}, queue="parked")  # a queue no worker consumes
            await queue.start()
            await wait_until(lambda: queue.dead_letters.get(job.id), message="dead")

    asyncio.run(prepare())
    # Names that enqueue refuses today, written by another tool (or an older version) straight into the file.
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE lssm_dead_letters SET queue = 'q\nforged\x1b[31m', type = 't\x07'")
        connection.execute("UPDATE lssm_jobs SET queue = 'waiting\nforged  0  0\x1b]0;title\x07'")
    return path


def test_dlq_list_and_show_escape_stored_text(database: Path, lssm_cli: CLI) -> None:
    url = f"sqlite:///{database}"
    listed = lssm_cli("dlq", "list", "--url", url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 1, lines  # one dead letter, one line: the newlines in its error forge nothing
    assert not any(char in listed.stdout for char in CONTROL)
    assert "RuntimeError: boom\\nabc123" in lines[0] and "forged line\\x1b[2J\\r\\u2028" in lines[0]
    assert "[q\\nforged\\x1b[31m]" in lines[0] and "  t\\x07  " in lines[0]

    exact = json.loads(lssm_cli("dlq", "list", "--json", "--url", url).stdout)
    assert exact[0]["error"] == f"RuntimeError: {HOSTILE}"
    assert exact[0]["queue"] == "q\nforged\x1b[31m"

    shown = lssm_cli("dlq", "show", exact[0]["id"], "--url", url)
    assert shown.returncode == 0, shown.stderr
    assert not any(char in shown.stdout for char in CONTROL)
    fields = [line for line in shown.stdout.splitlines() if not line.startswith(" ")]
    # Every line outside the indented traceback is one of the command's own fields.
    assert [line.split(":")[0] for line in fields] == [
        "id",
        "type",
        "queue",
        "failed at",
        "attempts",
        "reason",
        "error",
        "envelope",
        "traceback",
    ]
    assert "error:     RuntimeError: boom\\nabc123" in shown.stdout
    traceback = shown.stdout.split("traceback:\n", 1)[1].splitlines()
    assert traceback[0].startswith("  Traceback") and all(line.startswith("  ") for line in traceback)


def test_status_escapes_queue_names(database: Path, lssm_cli: CLI) -> None:
    url = f"sqlite:///{database}"
    status = lssm_cli("status", "--url", url)
    assert status.returncode == 0, status.stderr
    assert not any(char in status.stdout for char in (*CONTROL, "\x07"))
    lines = status.stdout.splitlines()
    assert len(lines) == 3  # the header and two queues
    assert any(line.startswith("waiting\\nforged  0  0\\x1b]0;title\\x07 ") for line in lines)
    exact = json.loads(lssm_cli("status", "--json", "--url", url).stdout)
    assert set(exact) == {"q\nforged\x1b[31m", "waiting\nforged  0  0\x1b]0;title\x07"}


def test_schedules_list_and_top_escape_stored_text(database: Path, lssm_cli: CLI) -> None:
    url = f"sqlite:///{database}"
    with sqlite3.connect(database) as connection:  # a schedule name written by another tool
        connection.execute(
            "INSERT INTO lssm_schedules (name, paused, updated_at) VALUES (?, 1, 0)",
            ("nightly\nforged  active\x1b[2J\x1b]0;title\x07",),
        )
    listed = lssm_cli("schedules", "list", "--url", url)
    assert listed.returncode == 0, listed.stderr
    assert not any(char in listed.stdout for char in (*CONTROL, "\x07"))
    lines = listed.stdout.splitlines()
    assert len(lines) == 2, lines  # the header and the one schedule
    assert lines[1].startswith("nightly\\nforged  active\\x1b[2J\\x1b]0;title\\x07  paused")
    exact = json.loads(lssm_cli("schedules", "list", "--json", "--url", url).stdout)
    assert exact[0]["name"] == "nightly\nforged  active\x1b[2J\x1b]0;title\x07"

    top = lssm_cli("top", "--once", "--interval", "0.1", "--url", url)
    assert top.returncode == 0, top.stderr
    assert not any(char in top.stdout for char in (*CONTROL, "\x07"))
    rows = [line for line in top.stdout.splitlines() if line.strip()]
    assert len(rows) == 5, rows  # title, header, two queues, the total
    assert any(row.startswith("waiting\\nforged  0  0\\x1b]0;title\\x07 ") for row in rows)
