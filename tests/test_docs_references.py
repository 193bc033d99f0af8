"""Every dotted name of our code the docs mention (``lssm_jobs.worker.Dispatcher``,
``lssm_jobs_redis.backend.RedisOptions``) exists: a module that moved or a class that was renamed fails
here instead of leaving the docs pointing at nothing."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_REFERENCE = re.compile(r"(?<![\w/.-])(lssm_jobs(?:_[a-z]+)*(?:\.[A-Za-z_]\w*)+)")
#: Look like code, are not: an SQL table's column, a file name, OpenTelemetry span attribute names.
NOT_CODE = frozenset({"lssm_jobs.status", "lssm_jobs.prisma", "lssm_jobs.deduplicated", "lssm_jobs.attempt"})


def _resolves(reference: str) -> bool:
    parts = reference.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_code_the_page_names_exists(page: Path) -> None:
    missing = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        for reference in _REFERENCE.findall(line):
            reference = reference.rstrip(".")
            if reference in NOT_CODE:
                continue
            plugin = reference.split(".")[0]
            if plugin != "lssm_jobs" and importlib.util.find_spec(plugin) is None:
                continue  # a plugin that is not installed here (its own suite checks its docs)
            if not _resolves(reference):
                missing.append(f"line {number}: {reference}")
    assert not missing, f"{page.name} names code that does not exist: {missing}"
