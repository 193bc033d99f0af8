"""Repository-wide pytest settings.

On CI (``CI=true``) a test may not skip for a missing service or binary: .ci/run installs everything, so
such a skip means something is broken. Skips for a capability a backend does not declare are expected and
stay skips.

Every test is marked ``unit`` or ``integration`` here, in one place, so ``nox -s fast`` (``pytest -m unit``)
is the inner loop: a test is ``integration`` when it lives in a plugin's suite (they talk to real servers)
or in ``tests/chaos``, runs programs (the CLI, several scheduler processes, the docs' runnable examples), is
marked ``slow`` or takes seconds of CPU, or uses a fixture that needs a server, Node.js or other processes;
every other test is ``unit`` (in process, no server: the memory and sqlite backends, the scheduler on a
manual clock, the docs checks, the typing tests). A test marked ``unit`` or ``integration`` by hand keeps its mark.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

EXPECTED_SKIPS = ("backend does not declare", "only pull backends")
# The Java Pub/Sub emulator cannot be installed from the registries CI may use (Debian 13 images lack it):
# where it is missing, the Pub/Sub tests run on the project's own server and only the Java half of the
# parity tests skips.
EXPECTED_SKIPS += ("Java Pub/Sub emulator not installed",)

INTEGRATION_PATHS = ("plugins/", "tests/chaos/", "tests/fuzz/")
#: Modules whose tests run the CLI or workers as processes of their own (seconds each, mostly start-up).
INTEGRATION_MODULES = frozenset(
    {
        "tests/test_cli.py",
        "tests/test_cli_jobs.py",
        "tests/test_cli_operations.py",
        "tests/test_cli_output.py",
        "tests/test_cli_workers.py",
        "tests/test_conformance_no_retention.py",  # the suite again with other settings: left out of the fast loop
        "tests/test_scheduler_processes.py",
        "tests/test_sqlite_doorbell.py",
        "tests/test_supervisor.py",
    }
)
#: Tests that run a program each (the docs' runnable examples, in a Python process of their own), and
#: in-process tests that take seconds of CPU (a brute-force walk over DST transitions).
INTEGRATION_TESTS = frozenset(
    {
        "tests/test_docs.py::test_runnable_example",
        "tests/test_scheduler_docs.py::test_example_runs",
        "tests/test_scheduler_triggers.py::test_next_and_latest_agree_with_brute_force_around_transitions",
        "tests/test_signing.py::test_a_cli_worker_dead_letters_an_unsigned_job",
        "tests/test_observability.py::test_health_probes_of_a_worker",
        "tests/test_observability.py::test_supervisor_health_needs_a_consuming_worker_process",
    }
)
#: Fixtures that start or need something outside the test process.
INTEGRATION_FIXTURES = frozenset(
    {
        "pg_schema",  # a PostgreSQL server
        "prisma_validator",  # Node.js, npm and Prisma's schema parser
        "processes",  # worker processes on one sqlite file
    }
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("unit") or item.get_closest_marker("integration"):
            continue
        path = item.path.relative_to(config.rootpath).as_posix()
        integration = (
            path.startswith(INTEGRATION_PATHS)
            or path in INTEGRATION_MODULES
            or f"{path}::{getattr(item, 'originalname', item.name)}" in INTEGRATION_TESTS
            or item.get_closest_marker("slow") is not None
            or not INTEGRATION_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
        )
        item.add_marker(pytest.mark.integration if integration else pytest.mark.unit)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes") or not report.skipped:
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(expected in reason for expected in EXPECTED_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped on CI, where nothing may be missing: {reason}"
