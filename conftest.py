"""Repository-wide pytest settings.

On CI (``CI=true``) a test may not skip for a missing service or binary: .ci/run installs everything, so
such a skip means something is broken. Skips for a capability a backend does not declare are expected and
stay skips.
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
