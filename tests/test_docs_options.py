"""The option tables in the docs are tested against the code: every option the queue or a backend factory
takes has a row, every row names an option that exists, and each documented default is the code's default.
``lssm-jobs plugins`` advertises (``options_help``) only options the factory takes, and the scheduler's
reference signatures are its real ones.

A table row looks like ``| `name` | default | meaning |``; a row may document several options at once
(``| `a`, `b` | 1, 2 | ... |``), their defaults then listed in the same order.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import pytest
from lssm_jobs.backends.sqlite import SqliteBackend
from lssm_jobs.plugins import load_plugins
from lssm_jobs.queue import QUEUE_OPTIONS, JobQueue

DOCS = Path(__file__).resolve().parent.parent / "docs"
_NAME = re.compile(r"`([a-z_][a-z0-9_]*)`")
REQUIRED = object()


def _rows(page: str, heading: str) -> dict[str, str]:
    """Option name -> documented default, from the first table under ``heading`` in ``docs/page``."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    rows: dict[str, str] = {}
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            in_table = True
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            names = _NAME.findall(cells[0])
            if not names or cells[0].startswith("---"):
                continue
            defaults = [cells[1]] if len(names) == 1 else [part.strip() for part in cells[1].split(",")]
            assert len(defaults) == len(names), f"{page}: row {line!r} lists {len(names)} options"
            rows.update(zip(names, defaults, strict=True))
        elif in_table:
            break
    assert rows, f"docs/{page} has no option table under {heading!r}"
    return rows


def _parameters(function: Callable[..., Any], *, skip: Iterable[str] = ()) -> dict[str, object]:
    """Keyword options of ``function`` -> default (REQUIRED when it has none)."""
    result = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name in ("self", *skip) or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        result[name] = REQUIRED if parameter.default is parameter.empty else parameter.default
    return result


def _same(documented: str, actual: object) -> bool:
    text = documented.strip().strip("`").replace(" ", "").replace("_", "")
    if actual is REQUIRED or (actual is None and "required" in documented):
        return "required" in documented
    if actual is None and not text:
        return True  # an optional option with no default, left blank
    candidates = {repr(actual), str(actual)}
    if isinstance(actual, str):
        candidates |= {f'"{actual}"'}
    if isinstance(actual, float) and actual.is_integer():
        candidates.add(str(int(actual)))
    return text in {candidate.replace(" ", "").replace("_", "") for candidate in candidates}


def _check(page: str, heading: str, options: dict[str, object], *, also: Iterable[str] = ()) -> None:
    rows = _rows(page, heading)
    missing = sorted(set(options) - set(rows) - set(also))
    unknown = sorted(set(rows) - set(options))
    assert not missing, f"docs/{page} does not document {missing}"
    assert not unknown, f"docs/{page} documents options that do not exist: {unknown}"
    wrong = {name: (rows[name], options[name]) for name in rows if not _same(rows[name], options[name])}
    assert not wrong, f"docs/{page}: documented default != code default: {wrong}"


def test_queue_options_table() -> None:
    options = _parameters(JobQueue.__init__, skip=("backend",))
    assert set(options) == QUEUE_OPTIONS, "open_queue's QUEUE_OPTIONS and JobQueue's keywords differ"
    _check("index.md", "## Queue options", options)


def test_sqlite_options_table() -> None:
    _check("sqlite.md", "## Options", _parameters(SqliteBackend.__init__))


def _redis_options() -> dict[str, object]:
    redis_backend = pytest.importorskip("lssm_jobs_redis.backend")
    options = _parameters(redis_backend.RedisBackend.__init__, skip=("options",))
    options.update({field.name: field.default for field in attrs.fields(redis_backend.RedisOptions)})
    options["url"] = redis_backend.DEFAULT_URL  # no url (and no client): this URL
    return options


def test_redis_options_table() -> None:
    options = _redis_options()
    # `redis=` (a client you own) is documented in the `url` row
    _check("redis.md", "## Options", options, also=("redis",))
    assert "`redis=`" in _rows_text("redis.md")


def _rows_text(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def _memory_options() -> dict[str, object]:
    from lssm_jobs.backends.memory import MemoryBackend, MemoryStore

    return {**_parameters(MemoryBackend.__init__), **_parameters(MemoryStore.__init__)}


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("memory", _memory_options),
        ("sqlite", lambda: _parameters(SqliteBackend.__init__)),
        ("redis", _redis_options),
    ],
)
def test_plugins_advertise_only_options_their_factory_takes(
    backend: str, options: Callable[[], dict[str, object]]
) -> None:
    spec = load_plugins().queue_backend(backend)
    unknown = sorted(set(spec.options_help) - set(options()))
    assert not unknown, f"backend {backend!r} advertises options its factory does not take: {unknown}"


def _documented_signature(page: str, heading: str, prefix: str) -> list[tuple[str, str | None]]:
    """The parameters of the signature written as ``prefix(...)`` under ``heading`` in ``docs/page``:
    (name, default or None)."""
    text = " ".join((DOCS / page).read_text(encoding="utf-8").split())
    match = re.compile(rf"`{prefix}\((?!\))").search(text, text.index(heading))  # not a mention: `schedule()`
    assert match, f"docs/{page} has no signature of {prefix} under {heading!r}"
    start = match.end()
    parts, depth, current = [], 0, ""
    for char in text[start:]:
        if char == ")" and depth == 0:
            break
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    parameters = []
    for part in parts:
        name, _, default = part.strip().partition("=")
        if name not in ("*", "self"):
            parameters.append((name, default or None))
    return parameters


@pytest.mark.parametrize(
    ("prefix", "function"),
    [
        ("JobScheduler", "lssm_jobs.scheduler.JobScheduler.__init__"),
        ("schedule", "lssm_jobs.scheduler.JobScheduler.schedule"),
    ],
)
def test_scheduler_reference_signatures(prefix: str, function: str) -> None:
    module, _, qualified = function.rpartition(".JobScheduler.")
    target = getattr(importlib.import_module(module).JobScheduler, qualified)
    documented = _documented_signature("scheduling.md", "## Reference", prefix)
    actual = _parameters(target)
    assert [name for name, _ in documented] == list(actual), "parameter names or order differ"
    for name, default in documented:
        if default is None or default.startswith("<"):  # required, or described (<scheduler default>)
            continue
        assert _same(default.replace('"', "'"), actual[name]), (
            f"{prefix}: {name}={default} != {actual[name]!r}"
        )
