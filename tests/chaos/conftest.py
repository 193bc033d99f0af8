"""The chaos suite's report, printed at the end of the test session (and appended to the file named by
``LSSM_CHAOS_REPORT``, if set).

The suite's modules (``chaos_harness``, ``chaos_app``, ``chaos_producer``) are plain modules of this folder,
which is put on ``sys.path`` here: the worker and producer processes import them the same way.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_harness import ChaosReport

_REPORTS: list[ChaosReport] = []


@pytest.fixture(scope="session")
def chaos_reports() -> list[ChaosReport]:
    return _REPORTS


def _machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORTS:
        return
    terminalreporter.section("chaos report")
    terminalreporter.write_line(f"machine: {_machine()}")
    for report in _REPORTS:
        terminalreporter.write_line(report.render())
    destination = os.environ.get("LSSM_CHAOS_REPORT")
    if destination:
        with open(destination, "a", encoding="utf-8") as file:
            file.write(f"machine: {_machine()}\n" + "\n".join(r.render() for r in _REPORTS) + "\n")
