"""The documentation matches the code: every hook, record field, event, CLI flag and conformance test is
documented, relative links resolve, and the examples marked ``<!-- run -->`` run."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from lssm_jobs import registrations
from lssm_jobs.backends.base import BackendCapabilities, Delivery, PullBackend, QueueBackend
from lssm_jobs.cli import build_parser
from lssm_jobs.events import EVENT_TYPES
from lssm_jobs.hookspecs import HOOK_NAMES, LssmJobsSpec
from lssm_jobs.jobs import JobOptions
from lssm_jobs.testing.conformance import PULL, ConformanceRule, conformance_rules, conformance_test_names

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: The pages this test owns: their links and examples are checked.
CORE_PAGES = (
    "index.md",
    "job-types.md",
    "retries-timeouts-dlq.md",
    "events.md",
    "plugins.md",
    "writing-a-backend.md",
    "cli.md",
    "operations.md",
)
RUN_MARKER = "<!-- run -->"


def _read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The text under the exact line ``heading`` up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    start = lines.index(heading) + 1
    end = len(lines)
    for index in range(start, len(lines)):
        match = re.match(r"^(#+) ", lines[index])
        if match and len(match.group(1)) <= level:
            end = index
            break
    return "\n".join(lines[start:end])


def _record_classes() -> dict[str, type]:
    return {
        name: cls
        for name, cls in vars(registrations).items()
        if isinstance(cls, type) and attrs.has(cls) and cls.__module__ == registrations.__name__
    }


# -- plugins.md: the hook reference ---------------------------------------------------------------------------


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_heading(hook: str) -> None:
    assert f"### {hook}" in _read("plugins.md").splitlines(), f"docs/plugins.md needs a line '### {hook}'"


def test_every_record_field_is_documented() -> None:
    text = _read("plugins.md")
    classes = _record_classes()
    assert classes, "no record classes found in lssm_jobs.registrations"
    missing = [
        f"{name}.{field.name}"
        for name, cls in classes.items()
        for field in attrs.fields(cls)
        if f"`{field.name}`" not in text
    ]
    assert not missing, f"docs/plugins.md does not mention: {missing}"


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_each_hook_section_documents_its_record(hook: str) -> None:
    """Each hook's section names the record type it returns and every field of that record."""
    returns = str(getattr(LssmJobsSpec, hook).__annotations__["return"])
    record_name = re.fullmatch(r"list\[(\w+)\]", returns)
    assert record_name, f"{hook} should return list[Record], got {returns}"
    record = _record_classes()[record_name.group(1)]
    section = _section(_read("plugins.md"), f"### {hook}")
    assert record.__name__ in section
    missing = [field.name for field in attrs.fields(record) if f"`{field.name}`" not in section]
    assert not missing, f"the {hook} section does not document {record.__name__} fields {missing}"


# -- writing-a-backend.md: the conformance suite ------------------------------------------------------------


def test_every_conformance_test_is_listed() -> None:
    text = _read("writing-a-backend.md")
    names = conformance_test_names()
    assert names
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"docs/writing-a-backend.md does not list: {missing}"


def test_no_unknown_conformance_test_is_listed() -> None:
    listed = set(re.findall(r"`(test_\w+)`", _read("writing-a-backend.md")))
    extra = listed - set(conformance_test_names())
    # The example backend's own redelivery test is named on purpose; everything else must exist.
    assert extra <= {"test_pushed_job_whose_worker_died_is_pushed_again"}, extra


def _bullets(text: str) -> dict[str, str]:
    """``- `name`...`` list items of a page by the name they start with, continuation lines joined and
    whitespace normalized."""
    items: dict[str, str] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^- `(test_\w+)`", line)
        if not match:
            continue
        parts = [line]
        for follower in lines[index + 1 :]:
            if not follower.startswith("  ") or not follower.strip():
                break
            parts.append(follower)
        items[match.group(1)] = " ".join(" ".join(parts).split())
    return items


def _needs_tag(needs: tuple[str, ...]) -> str:
    parts = ["pull backends"] if PULL in needs else []
    capabilities = [need for need in needs if need != PULL]
    if capabilities:
        parts.append("needs " + ", ".join(f"`{name}`" for name in capabilities))
    return f" ({'; '.join(parts)})" if parts else ""


@pytest.mark.parametrize("rule", conformance_rules(), ids=lambda rule: rule.name)
def test_each_conformance_rule_is_stated_in_the_guide(rule: ConformanceRule) -> None:
    """The guide states each test's rule in the words of its docstring, with what it needs."""
    assert rule.rule, f"{rule.name} needs a docstring stating its rule"
    stated = _bullets(_read("writing-a-backend.md")).get(rule.name)
    assert stated == f"- `{rule.name}`{_needs_tag(rule.needs)}: {rule.rule}", (
        f"docs/writing-a-backend.md states {rule.name} differently from the test's docstring:\n{stated}"
    )


def test_capability_skips_match_the_suite() -> None:
    section = " ".join(_section(_read("writing-a-backend.md"), "## Capabilities").split())
    for field in attrs.fields(BackendCapabilities):
        needing = {rule.name for rule in conformance_rules() if field.name in rule.needs}
        match = re.search(rf"- `{field.name}` skips (.*?);|- `{field.name}` skips (.*?)\.", section)
        if not needing:
            assert match is None, f"the guide says {field.name!r} skips tests; none needs it"
            continue
        assert match, f"the guide does not say which tests {field.name!r} skips"
        listed = set(re.findall(r"`(test_\w+)`", match.group(1) or match.group(2)))
        assert listed == needing, (field.name, listed ^ needing)


@pytest.mark.parametrize("cls", [QueueBackend, PullBackend, Delivery], ids=lambda cls: cls.__name__)
def test_every_backend_method_is_in_the_guide(cls: type) -> None:
    text = _read("writing-a-backend.md")
    methods = [name for name, value in vars(cls).items() if not name.startswith("_") and callable(value)]
    assert methods
    missing = [name for name in methods if f"`{name}" not in text and f"`async {name}" not in text]
    assert not missing, f"docs/writing-a-backend.md does not describe {cls.__name__}.{missing}"


# -- events.md -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_event_is_documented_with_its_fields(name: str) -> None:
    heading = f"### `{name}`"
    text = _read("events.md")
    assert heading in text.splitlines(), f"docs/events.md needs a line '{heading}'"
    section = _section(text, heading)
    cls = EVENT_TYPES[name]
    assert cls.__name__ in section
    missing = [field.name for field in attrs.fields(cls) if f"`{field.name}`" not in section]
    assert not missing, f"the {name} section does not document {missing}"


# -- job-types.md ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", attrs.fields(JobOptions), ids=lambda field: field.name)
def test_job_options_table_matches_defaults(field: attrs.Attribute) -> None:  # type: ignore[type-arg]
    rows = [line for line in _read("job-types.md").splitlines() if line.startswith(f"| `{field.name}` |")]
    assert rows, f"docs/job-types.md has no JobOptions row for {field.name}"
    assert f"`{field.default!r}`" in rows[0], (
        f"{field.name}: documented default differs from {field.default!r}"
    )


# -- cli.md -------------------------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                found[full] = sub
                found.update(_subcommands(sub, f"{full} "))
    return found


def test_every_cli_command_and_flag_is_documented() -> None:
    text = _read("cli.md")
    parser = build_parser()
    missing: list[str] = []
    for action in parser._actions:
        missing += [flag for flag in action.option_strings if flag.startswith("--") and flag not in text]
    for command, sub in _subcommands(parser).items():
        if f"`{command}" not in text and f"dlq {command}" not in text:
            missing.append(command)
        for action in sub._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help"):
                    continue
                if f"`{flag}" not in text:
                    missing.append(f"{command} {flag}")
    assert not missing, f"docs/cli.md does not document: {missing}"


def test_cli_environment_variables_are_documented() -> None:
    from lssm_jobs.cli import app
    from lssm_jobs.plugins import DISABLE_ENV

    text = _read("cli.md")
    for variable in (app.BACKEND_ENV, app.URL_ENV, app.OPTIONS_ENV, DISABLE_ENV):
        assert f"`{variable}`" in text, variable


# -- links and runnable examples --------------------------------------------------------------------------


@pytest.mark.parametrize("page", CORE_PAGES)
def test_relative_links_resolve(page: str) -> None:
    text = _read(page)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = DOCS / path if path else DOCS / page
        if not file.exists():
            broken.append(target)
            continue
        if anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
            broken.append(target)
    assert not broken, f"docs/{page} has broken links: {broken}"


def _anchors(text: str) -> set[str]:
    """GitHub-style heading anchors: lowercase, punctuation dropped, spaces to dashes."""
    anchors = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#+ (.*)$", line)
        if match:
            title = match.group(1).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _runnable_blocks() -> list[tuple[str, int, str, str | None]]:
    """``(page, line, code, expected stdout)``; the output is checked when the block is followed by a line
    ``prints`` and a ``text`` block."""
    blocks = []
    for page in CORE_PAGES:
        lines = _read(page).splitlines()
        for index, line in enumerate(lines):
            if line.strip() != RUN_MARKER:
                continue
            assert lines[index + 1].startswith("```python"), (
                f"{page}:{index + 1}: {RUN_MARKER} needs a python block"
            )
            end = lines.index("```", index + 2)
            expected = None
            after = [n for n in range(end + 1, len(lines)) if lines[n].strip()][:2]
            if len(after) == 2 and lines[after[0]] == "prints" and lines[after[1]] == "```text":
                close = lines.index("```", after[1] + 1)
                expected = "\n".join(lines[after[1] + 1 : close]) + "\n"
            blocks.append((page, index + 2, "\n".join(lines[index + 2 : end]), expected))
    return blocks


def test_there_are_runnable_examples() -> None:
    blocks = _runnable_blocks()
    assert {"index.md", "job-types.md", "retries-timeouts-dlq.md"} <= {page for page, _, _, _ in blocks}
    assert any(expected for _, _, _, expected in blocks)


@pytest.mark.parametrize(
    ("page", "line", "code", "expected"),
    _runnable_blocks(),
    ids=[f"{page}:{line}" for page, line, _, _ in _runnable_blocks()],
)
def test_runnable_example(page: str, line: int, code: str, expected: str | None, tmp_path: Path) -> None:
    """Each marked example runs as its own script in an empty directory (sqlite files land there)."""
    script = tmp_path / "example.py"
    script.write_text(code + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"docs/{page}:{line} failed:\n{result.stdout}\n{result.stderr}"
    if expected is not None:
        assert result.stdout == expected, f"docs/{page}:{line} printed something else than documented"
