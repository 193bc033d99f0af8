"""Scheduler processes on one sqlite file: three of them fire every tick of a 1-second schedule exactly once;
and a tick whose process is SIGKILLed while firing it is fired by another process, once."""

from __future__ import annotations

import signal
import sqlite3
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


def _start(
    database: Path, runs: Path, name: str, log: IO[bytes], until: float, *options: str
) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(PROCS), str(database), str(runs), "--name", name, "--until", repr(until)]
    return subprocess.Popen([*command, *options], stdout=log, stderr=subprocess.STDOUT)


def _spawn(
    database: Path, runs: Path, logs: Sequence[IO[bytes]], until: float
) -> list[subprocess.Popen[bytes]]:
    return [_start(database, runs, name, log, until) for name, log in zip(INSTANCES, logs, strict=True)]


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


def _claims(database: Path) -> list[tuple[str, float, str, float | None, int]]:
    """(schedule, tick, claimed_by, completed_at, attempts) of every claim, read as any client would."""
    with sqlite3.connect(database, timeout=10) as connection:
        rows = connection.execute(
            "SELECT schedule, tick, claimed_by, completed_at, attempts FROM lssm_schedule_claims"
        ).fetchall()
    connection.close()
    return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]


def _taken_over(database: Path) -> dict[str, tuple[float, str, float | None]] | None:
    """schedule -> (tick, holder, completed_at) of its claim taken over from a killed process."""
    if not database.exists():
        return None
    try:
        claims = _claims(database)
    except sqlite3.OperationalError:  # the schema is not there yet
        return None
    return {schedule: (tick, by, done) for schedule, tick, by, done, attempts in claims if attempts > 1}


@pytest.mark.slow
@run_async(timeout=60)
async def test_a_tick_whose_process_is_killed_while_firing_it_is_fired_once_by_another(
    tmp_path: Path,
) -> None:
    database, runs = tmp_path / "jobs.db", tmp_path / "runs"
    runs.mkdir()
    safety_stop = time.time() + 45  # the processes stop by themselves then, should this test be killed
    names = ("k-beat", "k-sync", "s1", "s2")
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in names}
    timeout = ("--claim-timeout", "2")
    # Two doomed processes, one per schedule so that each surely claims a tick of its own: "k-beat" is
    # SIGKILLed by its callable in its first run, "k-sync" while building its first payload, after the
    # claim and before the enqueue.
    doomed = [
        _start(
            database, runs, "k-beat", logs["k-beat"], safety_stop, "--schedules", "beat", "--die-in", "beat"
        ),
        _start(
            database, runs, "k-sync", logs["k-sync"], safety_stop, "--schedules", "sync", "--die-in", "sync"
        ),
    ]
    survivors: list[subprocess.Popen[bytes]] = []
    try:
        await wait_until(
            lambda: all(process.poll() is not None for process in doomed),
            timeout=20,
            message="both doomed processes killed while firing",
        )
        assert [process.returncode for process in doomed] == [-signal.SIGKILL] * 2
        unfinished = {schedule for schedule, _, _, done, _ in _claims(database) if done is None}
        assert unfinished == {"beat", "sync"}, "each left a claimed tick behind, not fired"
        survivors = [_start(database, runs, name, logs[name], safety_stop, *timeout) for name in ("s1", "s2")]
        ready = await wait_until(
            lambda: all((runs / f"ready.{name}").exists() for name in ("s1", "s2")), timeout=20
        )
        assert ready
        started = time.time()

        def recovered() -> bool:
            taken = _taken_over(database) or {}
            return (
                set(taken) == {"beat", "sync"}
                and all(done is not None for _, _, done in taken.values())
                and sum(tick > started for tick in _ticks(runs, "beat")) >= 2
            )

        await wait_until(recovered, timeout=20, interval=0.1, message="the killed ticks taken over and fired")
        for process in survivors:
            process.send_signal(signal.SIGTERM)
        for process in survivors:
            process.wait(timeout=30)
    finally:
        for process in doomed + survivors:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs.values():
            log.close()
    output = "\n".join(f"--- {name}\n" + (tmp_path / f"{name}.log").read_text() for name in names)
    assert [process.returncode for process in survivors] == [0, 0], output

    claims = _claims(database)
    assert all(done is not None for _, _, _, done, _ in claims), "every claimed tick finished firing"
    taken = _taken_over(database)
    assert taken is not None and set(taken) == {"beat", "sync"}
    assert {holder for _, holder, _ in taken.values()} <= {"s1", "s2"}
    assert sorted(attempts for *_, attempts in claims if attempts > 1) == [2, 2], "one take-over each"

    beats = _ticks(runs, "beat")
    assert {name for names_ in beats.values() for name in names_} <= {"s1", "s2"}, "k-beat died before"
    doubles = {tick: fired_by for tick, fired_by in beats.items() if len(fired_by) > 1}
    assert not doubles, f"ticks run more than once: {doubles}"
    ticks = sorted(beats)
    assert ticks == [ticks[0] + second for second in range(len(ticks))], f"a tick was missed: {ticks}"
    assert ticks[0] == taken["beat"][0], "the killed tick ran (first of all), by a survivor"
    assert sorted(tick for schedule, tick, *_ in claims if schedule == "beat") == ticks

    queue = open_queue("sqlite", path=str(database))
    try:
        counts = await queue.counts()
    finally:
        await queue.close()
    syncs = sorted(tick for schedule, tick, *_ in claims if schedule == "sync")
    assert syncs[0] == taken["sync"][0]
    assert syncs == [syncs[0] + second for second in range(len(syncs))], f"a tick was missed: {syncs}"
    assert counts["default"][JobStatus.PENDING] == len(syncs), "one job per tick, the killed one's too"
    assert set(_ticks(runs, "sync")) == set(syncs)
