"""Three scheduler processes on one sqlite file fire every tick of a 1-second schedule exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

import pytest
from lssm_jobs.jobs import JobStatus
from lssm_jobs.queue import open_queue
from lssm_jobs.testing.helpers import run_async, wait_until

PROCS = Path(__file__).parent / "scheduler_procs.py"
INSTANCES = ("i1", "i2", "i3")
TICKS_TOGETHER = 9  # ticks fired while all three processes run


def _ticks(runs: Path, schedule: str) -> dict[float, list[str]]:
    """tick (epoch seconds) -> instances that recorded it."""
    fired: dict[float, list[str]] = defaultdict(list)
    for path in runs.glob(f"{schedule}.*"):
        key, _, instance = path.name[len(schedule) + 1 :].rpartition(".")
        fired[datetime.fromisoformat(key.replace("Z", "+00:00")).timestamp()].append(instance)
    return dict(fired)


def _ready_at(runs: Path) -> float | None:
    files = [runs / f"ready.{name}" for name in INSTANCES]
    if not all(path.exists() and path.read_text() for path in files):
        return None
    return max(float(path.read_text()) for path in files)


def _spawn(
    database: Path, runs: Path, logs: Sequence[IO[bytes]], until: float
) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, str(PROCS), str(database), str(runs), "--name", name, "--until", repr(until)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for name, log in zip(INSTANCES, logs, strict=True)
    ]


@pytest.mark.slow
@run_async(timeout=120)
async def test_three_processes_fire_each_tick_exactly_once(tmp_path: Path) -> None:
    database, runs = tmp_path / "jobs.db", tmp_path / "runs"
    runs.mkdir()
    safety_stop = time.time() + 90  # the processes stop by themselves then, should this test be killed
    logs = [(tmp_path / f"{name}.log").open("wb") for name in INSTANCES]
    processes = _spawn(database, runs, logs, safety_stop)
    try:
        ready = await wait_until(lambda: _ready_at(runs), timeout=40, message="three schedulers running")
        await wait_until(
            lambda: sum(tick > ready for tick in _ticks(runs, "beat")) >= TICKS_TOGETHER,
            timeout=TICKS_TOGETHER + 20,
            interval=0.1,
            message=f"{TICKS_TOGETHER} ticks with all three running",
        )
        stopped_at = time.time()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    output = "\n".join((tmp_path / f"{name}.log").read_text() for name in INSTANCES)
    assert [process.returncode for process in processes] == [0, 0, 0], output
    for name in INSTANCES:
        assert int((runs / f"done.{name}").read_text()) >= TICKS_TOGETHER, f"{name} barely checked for ticks"

    beats = _ticks(runs, "beat")
    doubles = {tick: names for tick, names in beats.items() if len(names) > 1}
    assert not doubles, f"ticks fired more than once: {doubles}"
    ticks = sorted(beats)
    assert ticks == [ticks[0] + second for second in range(len(ticks))], f"a tick was missed: {ticks}"
    assert ticks[0] <= ready + 1 and ticks[-1] >= stopped_at - 1.5
    assert sum(tick > ready for tick in ticks) >= TICKS_TOGETHER

    syncs = _ticks(runs, "sync")
    assert all(len(names) == 1 for names in syncs.values()), "a job tick was fired twice"
    assert sorted(syncs) == [min(syncs) + second for second in range(len(syncs))]
    queue = open_queue("sqlite", path=str(database))
    try:
        counts = await queue.counts()
    finally:
        await queue.close()
    assert counts["default"][JobStatus.PENDING] == len(syncs), "one job per fired tick"
    print("ticks per instance:", {name: sum(name in names for names in beats.values()) for name in INSTANCES})
