"""Replaying dead letters: a dead letter whose dedupe key a live job holds is left in place with a
DedupeConflictError (never two live jobs with one key); ``replay_all`` replays each dead letter present at
its start exactly once and always ends, even while a worker keeps dead-lettering them again; the CLI reports
both. On memory and sqlite."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.events import Event
from lssm_jobs.jobs import Job, JobCatalog, JobStatus
from lssm_jobs.queue import EnqueueRequest, JobQueue, open_queue
from lssm_jobs.testing import run_async, wait_until

Factory = Callable[..., JobQueue]
CLI = Callable[..., subprocess.CompletedProcess[str]]


def _fails(job: Job[Any]) -> None:
    raise RuntimeError("upstream down")


async def _dead(queue: JobQueue, job_id: str) -> None:
    await wait_until(lambda: queue.dead_letters.get(job_id), timeout=10, message=f"{job_id} dead")


async def _status(queue: JobQueue, job_id: str) -> JobStatus | None:
    job = await queue.get(job_id)
    return None if job is None else job.status


@run_async()
async def test_replay_while_a_live_job_holds_the_dedupe_key(make_queue: Factory) -> None:
    async with make_queue(queues=["work"]) as queue:
        queue.register("sync.invoice", _fails)
        first = await queue.enqueue(
            "sync.invoice", {"n": 1}, queue="work", dedupe_key="invoice:42", max_retries=0
        )
        await queue.start()
        await _dead(queue, first.id)
        await queue.stop()
        # The key is free once its job died, so a new job takes it and is live (pending) now.
        second = await queue.enqueue("sync.invoice", {"n": 2}, queue="work", dedupe_key="invoice:42")
        assert second.id != first.id

        with pytest.raises(DedupeConflictError) as raised:
            await queue.dead_letters.replay(first.id)
        conflict = raised.value
        assert (conflict.job_id, conflict.dedupe_key, conflict.live_job_id) == (
            first.id,
            "invoice:42",
            second.id,
        )
        assert str(conflict) == (
            f"dead letter {first.id} was not replayed: its dedupe key 'invoice:42' is held by live job "
            f"{second.id}"
        )
        # Nothing moved: the dead letter is still there, the live job untouched, one live job per key.
        assert await queue.dead_letters.get(first.id) is not None
        assert await _status(queue, first.id) is JobStatus.DEAD
        assert await _status(queue, second.id) is JobStatus.PENDING
        again = await queue.enqueue("sync.invoice", {"n": 3}, queue="work", dedupe_key="invoice:42")
        assert again.id == second.id

        # Once the holder has finished, the replay goes through, keeps the key and honours the delay.
        queue.handlers["sync.invoice"] = lambda job: None
        await queue.start()
        await wait_until(lambda: _completed(queue, second.id), message="the holder completed")
        await queue.stop()
        assert await queue.dead_letters.replay(first.id, delay_ms=60_000)
        replayed = await queue.get(first.id)
        assert replayed is not None and replayed.status is JobStatus.SCHEDULED
        assert replayed.dedupe_key == "invoice:42"
        duplicate = await queue.enqueue("sync.invoice", {"n": 4}, queue="work", dedupe_key="invoice:42")
        assert duplicate.id == first.id


async def _completed(queue: JobQueue, job_id: str) -> bool:
    return await _status(queue, job_id) is JobStatus.COMPLETED


@pytest.mark.slow
@run_async(timeout=120)
async def test_replay_all_ends_and_replays_each_dead_letter_once(make_queue: Factory) -> None:
    replays: Counter[str] = Counter()

    def count(event: Event) -> None:
        replays[getattr(event, "job_id", "")] += 1

    async with make_queue(queues=["work"], concurrency=8) as queue:
        # A worker with no handler for the type: every job dies at once, and dies again when replayed.
        queue.register("other", lambda job: None)
        queue.on("job.replayed", count)
        await queue.start()
        orphans = await queue.enqueue_many(
            [EnqueueRequest(job_type="orphan", payload={"n": n}, queue="work") for n in range(120)]
        )
        held = [
            await queue.enqueue("orphan", {"key": key}, queue="work", dedupe_key=key) for key in ("k1", "k2")
        ]
        for job in [*orphans, *held]:
            await _dead(queue, job.id)
        # Live jobs in a queue no worker consumes take the two keys.
        holders = [await queue.enqueue("orphan", {}, queue="parked", dedupe_key=key) for key in ("k1", "k2")]

        report = await asyncio.wait_for(queue.dead_letters.replay_all(), 60)
        assert report.replayed == len(orphans)
        assert report.missing == 0
        assert sorted((c.job_id, c.live_job_id) for c in report.conflicts) == sorted(
            (job.id, holder.id) for job, holder in zip(held, holders, strict=True)
        )
        assert set(replays) == {job.id for job in orphans}
        assert set(replays.values()) == {1}  # none twice, though the worker killed them again meanwhile

        # They die again; a second call ends as well.
        for job in orphans:
            await _dead(queue, job.id)
        second = await asyncio.wait_for(queue.dead_letters.replay_all(), 60)
        assert (second.replayed, len(second.conflicts)) == (len(orphans), 2)


@pytest.mark.slow
def test_cli_reports_replay_conflicts_in_one_line(tmp_path: Path, lssm_cli: CLI) -> None:
    database = tmp_path / "jobs.db"
    url = f"sqlite:///{database}"

    async def prepare() -> tuple[str, str, str]:
        async with open_queue(
            "sqlite", path=database, sinks=[], catalog=JobCatalog(), poll_interval=0.05
        ) as queue:
            queue.register("report", _fails)
            dead = await queue.enqueue("report", {}, dedupe_key="report:2026-01", max_retries=0)
            plain = await queue.enqueue("report", {}, max_retries=0)
            await queue.start()
            await _dead(queue, dead.id)
            await _dead(queue, plain.id)
            await queue.stop()
            live = await queue.enqueue("report", {}, dedupe_key="report:2026-01")
            return dead.id, plain.id, live.id

    dead, plain, live = asyncio.run(prepare())
    result = lssm_cli("dlq", "replay", dead, plain, "--url", url)
    assert result.returncode == 1
    assert (
        result.stdout.strip()
        == "replayed 1 dead letters; 1 left in place (a live job holds their dedupe key)"
    )
    assert result.stderr.strip().splitlines() == [
        f"lssm-jobs: error: dead letter {dead} was not replayed: its dedupe key 'report:2026-01' is held by "
        f"live job {live}"
    ]
    listed = json.loads(lssm_cli("dlq", "list", "--json", "--url", url).stdout)
    assert [letter["id"] for letter in listed] == [dead]

    result = lssm_cli("dlq", "replay", "--all", "--url", url)
    assert result.returncode == 1
    assert result.stdout.startswith("replayed 0 dead letters; 1 left in place")
    assert "Traceback" not in result.stderr and f"held by live job {live}" in result.stderr
