"""The supported Pythons are named once (SUPPORTED_PYTHONS in noxfile.py) and everything agrees with it:
requires-python, the classifiers, and the versions .ci/run runs the fast tests on (the oldest and newest)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _supported() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "SUPPORTED_PYTHONS" for target in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return value
    raise AssertionError("noxfile.py defines no SUPPORTED_PYTHONS")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_classifiers_name_the_supported_pythons() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    named = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)
    assert tuple(named) == _supported()


def test_requires_python_starts_at_the_oldest() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^requires-python = ">=(3\.\d+)"$', text, re.MULTILINE)
    assert match, "requires-python must be a lower bound"
    assert match.group(1) == min(_supported(), key=_key)


def test_ci_runs_the_fast_tests_on_the_oldest_and_the_newest() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    supported = sorted(_supported(), key=_key)
    assert f"for version in {supported[0]} {supported[-1]}; do" in script
    assert 'nox -s fast -P "$version"' in script


def test_this_python_is_supported() -> None:
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in _supported()
