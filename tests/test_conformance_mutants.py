"""The conformance suite proves itself: run over deliberately broken variants of the memory and sqlite
backends (``conformance_mutants.py``, one defect each), every test a mutant names must fail, with an
assertion or a timeout, never with an error of the mutant's own.

The suite runs in pytest subprocesses over a generated module with one ``BackendConformance`` subclass per
mutant, each running only the tests that mutant names, in a few shards at once (most of these tests wait
rather than compute). A control class runs some of the same tests over the unbroken backends through the
same machinery, and must pass.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from lssm_jobs.backends import sqlite as sqlite_module
from lssm_jobs.testing.conformance import conformance_test_names

CATALOGUE = Path(__file__).with_name("conformance_mutants.py")
SHARDS = int(os.environ.get("LSSM_JOBS_MUTANT_SHARDS", "3"))
#: Exceptions with which a conformance test reports that the backend broke the contract.
VERDICTS = ("AssertionError", "TimeoutError", "Failed")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_mutants", CATALOGUE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["conformance_mutants"] = module
    spec.loader.exec_module(module)
    return module


mutants = _load()
MUTANTS: tuple[Any, ...] = mutants.MUTANTS
#: Tests the control runs over the unbroken backends, through the same machinery.
CONTROL_TESTS = (mutants.SETTLING, mutants.LEASES, mutants.FIFO, mutants.PUSH_RACE, mutants.BATCH)

GENERATED = """
import importlib.util
import sys

import pytest
from lssm_jobs.testing import BackendConformance

spec = importlib.util.spec_from_file_location("conformance_mutants", {catalogue!r})
mutants = importlib.util.module_from_spec(spec)
sys.modules["conformance_mutants"] = mutants
spec.loader.exec_module(mutants)


def suite(make):
    class Suite(BackendConformance):
        @pytest.fixture
        def lssm_jobs_backend_factory(self, tmp_path):
            return make(tmp_path)

    return Suite


for mutant in mutants.MUTANTS:
    globals()["TestMutant_" + mutant.name.replace("-", "_")] = suite(mutant.make)
TestControl_memory = suite(mutants.with_delivery(mutants._MemoryDelivery))
TestControl_sqlite = suite(mutants.sql())
"""


def _class(name: str) -> str:
    return "TestMutant_" + name.replace("-", "_")


@attrs.frozen
class Outcome:
    status: str  # passed, failed, error, skipped
    verdict: str  # the exception type a failure ended with
    message: str


def _shards() -> list[list[str]]:
    """Node ids of every mutant's tests and the controls, dealt into shards (the slow mutants first, so
    they spread over the shards)."""
    ordered = sorted(MUTANTS, key=lambda mutant: not mutant.slow)
    shards: list[list[str]] = [[] for _ in range(max(SHARDS, 1))]
    for index, mutant in enumerate(ordered):
        shards[index % len(shards)].extend(f"{_class(mutant.name)}::{test}" for test in mutant.caught_by)
    for index, backend in enumerate(("memory", "sqlite")):
        shards[-1 - index % len(shards)].extend(f"TestControl_{backend}::{test}" for test in CONTROL_TESTS)
    return [shard for shard in shards if shard]


def _outcomes(report: Path) -> dict[str, Outcome]:
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        key = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        status, verdict, message = "passed", "", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                status, message = {"failure": "failed"}.get(kind, kind), found.get("message") or ""
                # pytest ends a failure's report with "<file>:<line>: <exception type>"
                lines = [line for line in (found.text or "").splitlines() if line.strip()]
                verdict = lines[-1].rsplit(": ", 1)[-1].strip() if lines else ""
                break
        outcomes[key] = Outcome(status=status, verdict=verdict, message=message[:500])
    return outcomes


@pytest.fixture(scope="module")
def mutant_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """Run every shard at once; the outcome of each ``Class::test``."""
    directory = tmp_path_factory.mktemp("mutants")
    module = directory / "test_generated_mutants.py"
    module.write_text(GENERATED.format(catalogue=str(CATALOGUE)), encoding="utf-8")
    began = time.monotonic()
    runs = []
    for index, shard in enumerate(_shards()):
        report = directory / f"shard-{index}.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            *(f"{module.name}::{node}" for node in shard),
            "-q",
            "-p",
            "no:cacheprovider",
            "--timeout=120",
            f"--junitxml={report}",
            f"--rootdir={directory}",
        ]
        log = (directory / f"shard-{index}.log").open("w")
        runs.append(
            (subprocess.Popen(command, cwd=directory, stdout=log, stderr=subprocess.STDOUT), report, log)
        )
    outcomes: dict[str, Outcome] = {}
    for process, report, log in runs:
        process.wait(timeout=900)
        log.close()
        assert report.exists(), f"a shard crashed before reporting: see {log.name}"
        outcomes.update(_outcomes(report))
    print(f"\n{len(MUTANTS)} mutants in {len(runs)} shards: {time.monotonic() - began:.1f}s")
    yield outcomes


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.name)
def test_suite_fails_for_the_mutant(mutant: Any, mutant_run: dict[str, Outcome]) -> None:
    for test in mutant.caught_by:
        outcome = mutant_run.get(f"{_class(mutant.name)}::{test}")
        assert outcome is not None, f"{test} did not run over {mutant.name}"
        assert outcome.status == "failed", f"{mutant.name} ({mutant.defect}) survived {test}: {outcome}"
        assert outcome.verdict in VERDICTS, (
            f"{test} failed over {mutant.name} with an error of the mutant's own, not a verdict: {outcome}"
        )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_unbroken_backends_pass_the_same_tests(backend: str, mutant_run: dict[str, Outcome]) -> None:
    for test in CONTROL_TESTS:
        outcome = mutant_run.get(f"TestControl_{backend}::{test}")
        assert outcome is not None and outcome.status == "passed", (test, outcome)


def test_catalogue_names_real_tests_and_covers_every_kind() -> None:
    names = set(conformance_test_names())
    assert len({mutant.name for mutant in MUTANTS}) == len(MUTANTS), "mutant names must be unique"
    for mutant in MUTANTS:
        assert mutant.caught_by and set(mutant.caught_by) <= names, (mutant.name, mutant.caught_by)
    kinds = {mutant.kind for mutant in MUTANTS}
    # The kinds of defect issue #11 found passing the suite, and more.
    assert {"lease tokens", "concurrency", "order", "reporting", "dedupe", "dead letters", "waiting"} <= kinds


def test_sql_fragments_exist() -> None:
    """Each sqlite mutant rewrites SQL the backend really runs; a rewrite of text that is gone would leave
    the backend unbroken (and the mutant test would say it survived)."""
    source = (
        inspect.getsource(sqlite_module)
        .replace("{_LIVE}", sqlite_module._LIVE)
        .replace("{self._HELD}", sqlite_module.SqliteBackend._HELD)
    )
    assert mutants._HELD == sqlite_module.SqliteBackend._HELD
    rewrites = [
        (mutant.name, rewrite) for mutant in MUTANTS for rewrite in getattr(mutant.make, "rewrites", ())
    ]
    assert rewrites
    for name, rewrite in rewrites:
        assert rewrite.where in source and rewrite.old in source, (name, rewrite)
