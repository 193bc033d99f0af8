"""docs/scheduling.md matches the code: its runnable examples run and print what they claim, every store
method and JobScheduler parameter is documented, and the DST table is what the triggers do."""

from __future__ import annotations

import inspect
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lssm_jobs.scheduler import CronTrigger, JobScheduler, SchedulerStore

PAGE = Path(__file__).resolve().parent.parent / "docs" / "scheduling.md"
BERLIN = ZoneInfo("Europe/Berlin")


def _examples() -> list[tuple[int, str, str | None]]:
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    found = []
    for index, line in enumerate(lines):
        if line.strip() != "<!-- run -->":
            continue
        assert lines[index + 1] == "```python"
        end = lines.index("```", index + 2)
        expected = None
        rest = [n for n in range(end + 1, len(lines)) if lines[n].strip()][:2]
        if len(rest) == 2 and lines[rest[0]] == "prints" and lines[rest[1]] == "```text":
            close = lines.index("```", rest[1] + 1)
            expected = "\n".join(lines[rest[1] + 1 : close]) + "\n"
        found.append((index + 2, "\n".join(lines[index + 2 : end]), expected))
    return found


def test_there_is_a_runnable_example() -> None:
    assert _examples()


@pytest.mark.parametrize(("line", "code", "expected"), _examples(), ids=lambda value: str(value)[:20])
def test_example_runs(line: int, code: str, expected: str | None, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"scheduling.md:{line} failed:\n{result.stderr}"
    if expected is not None:
        assert result.stdout == expected


def test_store_methods_and_scheduler_parameters_are_documented() -> None:
    text = PAGE.read_text(encoding="utf-8")
    methods = [name for name in SchedulerStore.__abstractmethods__] + ["open", "close"]
    assert not [name for name in methods if f"`{name}(" not in text]
    parameters = [name for name in inspect.signature(JobScheduler).parameters if name != "queue"]
    assert not [name for name in parameters if f"{name}=" not in text]
    schedule = [name for name in inspect.signature(JobScheduler.schedule).parameters if name != "self"]
    assert not [name for name in schedule if name not in text]


def _day(expression: str, year: int, month: int, day: int) -> list[str]:
    trigger = CronTrigger(expression, tz=BERLIN)
    start = datetime(year, month, day, tzinfo=BERLIN).timestamp()
    end = datetime(year, month, day + 1, tzinfo=BERLIN).timestamp()
    out, at = [], start
    while (tick := trigger.next_fire(at)) is not None and tick < end:
        out.append(datetime.fromtimestamp(tick, BERLIN).strftime("%H:%M %Z"))
        at = tick
    return out


def test_the_dst_table_is_what_the_triggers_do() -> None:
    assert _day("30 2 * * *", 2026, 3, 29) == ["03:30 CEST"]
    assert _day("30 2 * * *", 2026, 10, 25) == ["02:30 CEST"]
    assert _day("*/30 2 * * *", 2026, 3, 29) == ["03:00 CEST", "03:30 CEST"]
    assert _day("*/30 2 * * *", 2026, 10, 25) == ["02:00 CEST", "02:30 CEST"]
    assert _day("0 * * * *", 2026, 3, 29)[:3] == ["01:00 CET", "03:00 CEST", "04:00 CEST"]
    assert _day("0 * * * *", 2026, 10, 25)[1:5] == ["02:00 CEST", "02:00 CET", "03:00 CET", "04:00 CET"]
    assert sum(tick.startswith("02:") for tick in _day("*/15 * * * *", 2026, 10, 25)) == 8
