"""The typed API, proven with type checkers: mypy (and pyright, where Node.js runs it) check the samples in
``samples/`` and must reveal exactly the types their ``# revealed:`` comments name, reject exactly the lines
marked ``# error``, and accept every other line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

SAMPLES = Path(__file__).resolve().parent / "samples"
_REVEALED = re.compile(r"#\s*revealed:\s*(?P<type>.+?)\s*$")
_ERROR = re.compile(r"#\s*error\b")
_QUALIFIER = re.compile(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])")  # "lssm_jobs.jobs.Job" -> "Job"


@attrs.frozen
class Findings:
    """What a checker said about one sample: revealed types and error lines (1-based)."""

    revealed: dict[int, str]
    errors: dict[int, list[str]]


def _normalize(type_text: str) -> str:
    return _QUALIFIER.sub("", type_text).replace(" ", "")


def _expected(sample: Path) -> Findings:
    revealed: dict[int, str] = {}
    errors: dict[int, list[str]] = {}
    for number, line in enumerate(sample.read_text(encoding="utf-8").splitlines(), start=1):
        if match := _REVEALED.search(line):
            revealed[number] = _normalize(match.group("type"))
        if _ERROR.search(line):
            errors[number] = []
    return Findings(revealed=revealed, errors=errors)


def _samples() -> list[Path]:
    return sorted(SAMPLES.glob("*.py"))


def _compare(sample: Path, found: Findings) -> None:
    expected = _expected(sample)
    assert found.revealed == expected.revealed, "revealed types differ"
    unexpected = {line: messages for line, messages in found.errors.items() if line not in expected.errors}
    missing = sorted(set(expected.errors) - set(found.errors))
    assert not unexpected, f"errors on lines not marked '# error': {unexpected}"
    assert not missing, f"lines marked '# error' that the checker accepted: {missing}"


# -- mypy -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mypy_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Findings]:
    api = pytest.importorskip("mypy.api", reason="mypy is part of the test extra: pip install '.[test]'")
    cache = tmp_path_factory.mktemp("mypy-cache")
    stdout, stderr, _ = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(cache), *map(str, _samples())]
    )
    assert not stderr, stderr
    return _parse_mypy(stdout)


def _parse_mypy(output: str) -> dict[Path, Findings]:
    findings = {sample: Findings(revealed={}, errors={}) for sample in _samples()}
    pattern = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<kind>error|note): (?P<message>.*)$")
    for line in output.splitlines():
        match = pattern.match(line)
        assert match, f"unexpected mypy output: {line}"
        sample = Path(match.group("path")).resolve()
        number = int(match.group("line"))
        message = match.group("message")
        if match.group("kind") == "error":
            findings[sample].errors.setdefault(number, []).append(message)
        elif revealed := re.match(r'Revealed type is "(.*)"$', message):
            findings[sample].revealed[number] = _normalize(revealed.group(1))
    return findings


@pytest.mark.parametrize("sample", _samples(), ids=lambda path: path.name)
def test_mypy(sample: Path, mypy_findings: dict[Path, Findings]) -> None:
    _compare(sample, mypy_findings[sample])


# -- pyright ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyright_findings() -> dict[Path, Findings]:
    pytest.importorskip("pyright", reason="pyright is part of the test extra: pip install '.[test]'")
    if shutil.which("node") is None:
        pytest.skip("pyright needs Node.js (apt-get install nodejs)")
    command = [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable]
    result = subprocess.run(
        [*command, *map(str, _samples())], capture_output=True, text=True, timeout=300, check=False
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return dict(_parse_pyright(report["generalDiagnostics"]))


def _parse_pyright(diagnostics: list[dict[str, object]]) -> Iterator[tuple[Path, Findings]]:
    findings = {sample: Findings(revealed={}, errors={}) for sample in _samples()}
    for diagnostic in diagnostics:
        sample = Path(str(diagnostic["file"])).resolve()
        start = diagnostic["range"]["start"]  # type: ignore[index]
        number = int(start["line"]) + 1
        message = str(diagnostic["message"])
        if diagnostic["severity"] == "error":
            findings[sample].errors.setdefault(number, []).append(message)
        elif revealed := re.match(r'Type of ".*" is "(.*)"$', message, re.DOTALL):
            findings[sample].revealed[number] = _normalize(revealed.group(1))
    yield from findings.items()


@pytest.mark.parametrize("sample", _samples(), ids=lambda path: path.name)
def test_pyright(sample: Path, pyright_findings: dict[Path, Findings]) -> None:
    _compare(sample, pyright_findings[sample])


def test_the_samples_mark_errors_and_reveals() -> None:
    expected = [_expected(sample) for sample in _samples()]
    assert expected and all(findings.errors and findings.revealed for findings in expected)
