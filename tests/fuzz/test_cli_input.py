"""The command line never shows a traceback on bad input: ``lssm_jobs.cli.main`` run in process with random
argument lists (real option names mixed with random values) ends with a message and an exit status, and
stderr holds no "Traceback" (``--debug``, which asks for tracebacks, is left out).

It runs in a temporary directory on sqlite files and the memory backend: no argument can reach a network
backend (names and URLs of those are filtered out), and no worker or scheduler can start for real (no
importable APP exists there).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lssm_jobs.cli import build_parser, main

NETWORK = ("redis", "gcp", "pubsub", "tasks", "http", "tcp", "amqp", "nats")
LEFT_OUT = {"--debug", "demo", "-h", "--help"}


def _words() -> tuple[list[str], list[str]]:
    """Every command and option name the parser knows."""
    commands: list[str] = []
    options: list[str] = []

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            options.extend(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    commands.append(name)
                    walk(child)

    walk(build_parser())
    return sorted(set(commands) - LEFT_OUT), sorted(set(options) - LEFT_OUT)


COMMANDS, OPTIONS = _words()
_SAFE_TEXT = st.text(max_size=24).filter(lambda text: not any(word in text.lower() for word in NETWORK))
VALUES = (
    st.sampled_from(
        [
            "sqlite", "memory", "nosuch", "sqlite:///jobs.db", "sqlite://", "sqlite:////nonexistent/dir/x.db",
            "jobs.db", "", "-", "--", "0", "-1", "1e9", "99999999999999999999", "nan", "{}", "[]", "null",
            '{"n": 1}', '{"a": ', "key=value", "path=jobs.db", "busy_timeout=-1", "=", "a:b", ":", "os:path",
            "json:loads", "lssm_jobs:define_job_type", "lssm_jobs.handlers:Handlers", "no.such.module:x",
            "DEBUG", "nonsense-level", "prisma", "sql", "postgresql", "all", "--all", "x" * 300, "\x00", "\udcff",
        ]
    )
    | _SAFE_TEXT
    | st.integers().map(str)
)
_JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
).map(json.dumps)
_DB = st.just(["--url", "sqlite:///jobs.db"])
_FLAGGED = st.lists(
    st.tuples(st.sampled_from(["--delay-ms", "--priority", "--queue", "--dedupe-key", "-o", "--app"]), VALUES),
    max_size=3,
).map(lambda pairs: [word for pair in pairs for word in pair])
# Random words anywhere: mostly refused by argparse itself.
SHUFFLED = st.builds(
    lambda head, command, rest: [*head, command, *rest],
    st.lists(st.sampled_from(["--log-level", "DEBUG", "ERROR", "nonsense"]), max_size=2),
    st.sampled_from(COMMANDS),
    st.lists(st.sampled_from(OPTIONS) | st.sampled_from(COMMANDS) | VALUES, max_size=8),
)
# Well-formed commands with random values: these get past argparse, to the queue and the backend.
SHAPED = (
    st.builds(lambda kind, payload, flags, db: ["enqueue", kind, "--payload", payload, *flags, *db],
              VALUES, _JSON_TEXT | VALUES, _FLAGGED, _DB)
    | st.builds(lambda action, ids, db: ["dlq", action, *ids, *db],
                st.sampled_from(["list", "show", "replay", "purge"]), st.lists(VALUES, max_size=2), _DB)
    | st.builds(lambda url, flags: ["status", "--url", url, *flags], VALUES, _FLAGGED)
    | st.builds(lambda backend, options: ["status", "--backend", backend, *options],
                st.sampled_from(["sqlite", "memory"]) | VALUES, _FLAGGED)
    | st.builds(lambda app, flags, db: ["worker", app, *flags, *db], VALUES, _FLAGGED, _DB)
    | st.builds(lambda app: ["scheduler", app, "--no-progress"], VALUES)
    | st.builds(lambda fmt, dialect: ["schema", "--format", fmt, "--dialect", dialect], VALUES, VALUES)
)
ARGV = SHUFFLED | SHAPED


@pytest.fixture
def cli_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("LSSM_JOBS_BACKEND", "LSSM_JOBS_URL", "LSSM_JOBS_OPTIONS", "LSSM_JOBS_SIGNING_KEY",
                 "LSSM_JOBS_SIGNING_KEY_FILE", "LSSM_JOBS_SINKS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@given(argv=ARGV)
def test_the_cli_never_shows_a_traceback(
    cli_sandbox: Path, argv: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    capsys.readouterr()
    caplog.clear()
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's own exit on bad usage (status 2) is fine
        status = exit.code if isinstance(exit.code, int) else 2
    output = capsys.readouterr()
    assert "Traceback" not in output.err and "Traceback" not in output.out, f"argv={argv!r}\n{output.err}"
    logged = [record for record in caplog.records if record.exc_info and record.levelno >= logging.ERROR]
    assert not logged, f"argv={argv!r} logged a traceback: {logged[0].getMessage()}"
    assert isinstance(status, int)
    if status != 0:
        assert output.err.strip(), f"argv={argv!r} failed (status {status}) without saying why"
