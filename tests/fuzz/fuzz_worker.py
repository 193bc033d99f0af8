"""One fuzz example's run: healthy jobs around bad records, a real worker (in process), and what became of
each. The checks every storage fuzz test makes are in :func:`check_outcome`."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import attrs
from fuzz_storage import TARGET_TYPE, Space
from lssm_jobs import Job, JobCatalog, JobStatus, LssmJobsError, define_job_type
from lssm_jobs.backends.base import DeadLetter
from lssm_jobs.signing import SigningKeys
from lssm_jobs.testing import wait_until

HEALTHY_TYPE = "fuzz.healthy"
HEALTHY_AROUND = 3  # healthy jobs enqueued before the bad records, and as many after


@attrs.frozen
class TargetPayload:
    n: int


CATALOG = JobCatalog()
define_job_type(type=TARGET_TYPE, payload=TargetPayload, catalog=CATALOG)


@attrs.define
class Outcome:
    """What one run did: runs per job id, the healthy jobs' final records, the bad records' fates."""

    healthy: list[str] = attrs.field(factory=list)
    healthy_runs: Counter[str] = attrs.field(factory=Counter)
    healthy_attempts: dict[str, int] = attrs.field(factory=dict)
    healthy_states: dict[str, JobStatus | None] = attrs.field(factory=dict)
    target_runs: Counter[str] = attrs.field(factory=Counter)
    dead: dict[str, DeadLetter] = attrs.field(factory=dict)
    completed: set[str] = attrs.field(factory=set)
    still_live: set[str] = attrs.field(factory=set)
    log_lines: list[str] = attrs.field(factory=list)
    consumer_alive: bool = True


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def run_among_healthy(
    space: Space,
    bad_ids: Sequence[str],
    write: Callable[[Space], Awaitable[None]],
    *,
    signing_key: SigningKeys | None = None,
    settle_timeout: float = 10.0,
    follow: Collection[str] | None = None,
) -> Outcome:
    """Enqueue healthy jobs, write the bad records (``write``), enqueue more healthy jobs, run a worker until
    the healthy jobs completed and the bad ones (``follow``, by default ``bad_ids``) are settled: dead-lettered,
    completed, or no longer live anywhere."""
    outcome = Outcome()
    queue = space.queue(
        concurrency=4,
        lease_ms=1_500,
        poll_interval=0.05,
        shutdown_timeout=2.0,
        sinks=[],
        catalog=CATALOG,
        signing_key=signing_key,
    )

    def healthy(job: Job[Any]) -> None:
        outcome.healthy_runs[job.id] += 1
        outcome.healthy_attempts[job.id] = job.attempt

    async def target(job: Job[Any]) -> None:
        outcome.target_runs[job.id] += 1

    queue.register(HEALTHY_TYPE, healthy)
    queue.register(TARGET_TYPE, target)
    followed = bad_ids if follow is None else follow  # read once written: ``write`` may fill it
    watcher = _Lines(outcome.log_lines)
    logging.getLogger("lssm_jobs").addHandler(watcher)
    try:
        async with queue:
            for n in range(HEALTHY_AROUND):
                outcome.healthy.append((await queue.enqueue(HEALTHY_TYPE, {"n": n})).id)
            await write(space)
            for n in range(HEALTHY_AROUND):
                outcome.healthy.append((await queue.enqueue(HEALTHY_TYPE, {"n": HEALTHY_AROUND + n})).id)
            await queue.start()

            async def healthy_done() -> bool:
                redelivered = False
                for job_id in outcome.healthy:
                    record = await queue.backend.get(job_id)
                    outcome.healthy_states[job_id] = None if record is None else record.status
                    redelivered = redelivered or (record is not None and record.attempts > 1)
                # A healthy job delivered twice already broke the promise: no need to wait any longer.
                return redelivered or all(state is JobStatus.COMPLETED for state in outcome.healthy_states.values())

            async def bad_settled() -> bool:
                outcome.still_live.clear()
                for job_id in list(followed):
                    dead = await queue.backend.get_dead(job_id)
                    if dead is not None:
                        outcome.dead[job_id] = dead
                        continue
                    try:
                        record = await queue.backend.get(job_id)
                    except (ValueError, LssmJobsError):  # what is left of it cannot be read (and says so)
                        record = None
                    if record is not None and record.status is JobStatus.COMPLETED:
                        outcome.completed.add(job_id)
                    elif await space.referenced(job_id):
                        outcome.still_live.add(job_id)
                return not outcome.still_live

            try:
                await wait_until(healthy_done, timeout=settle_timeout, interval=0.02, message="healthy jobs done")
                await wait_until(bad_settled, timeout=settle_timeout, interval=0.02, message="bad records settled")
            except TimeoutError:
                pass  # check_outcome says what is wrong
            outcome.consumer_alive = queue.running
            await asyncio.sleep(0.05)  # let a job whose run is settling finish before the queue stops
    finally:
        logging.getLogger("lssm_jobs").removeHandler(watcher)
    return outcome


def check_outcome(outcome: Outcome, bad_ids: Sequence[str], *, may_complete: bool = True) -> None:
    """The promises: the worker survived; every healthy job completed after exactly one run, on its first
    attempt; every bad record is dead-lettered with a reason, or (when ``may_complete``: it happened to be
    valid) completed, or was dropped with a log line naming it; none is left to be delivered again."""
    assert outcome.consumer_alive, "the worker's consumer stopped"
    for job_id in outcome.healthy:
        assert outcome.healthy_states.get(job_id) is JobStatus.COMPLETED, (
            f"healthy job {job_id} is {outcome.healthy_states.get(job_id)}; log: {outcome.log_lines[-5:]}"
        )
        assert outcome.healthy_runs[job_id] == 1, f"healthy job {job_id} ran {outcome.healthy_runs[job_id]} times"
        attempt = outcome.healthy_attempts[job_id]
        assert attempt == 1, f"healthy job {job_id} was delivered again (attempt {attempt})"
    assert not outcome.still_live, f"bad records still live (delivered again and again?): {outcome.still_live}"
    for job_id in bad_ids:
        if job_id in outcome.dead:
            assert outcome.dead[job_id].reason, f"dead letter {job_id} has no reason"
        elif job_id in outcome.completed:
            assert may_complete, f"{job_id} completed, but it must not run"
        else:
            assert any(job_id in line for line in outcome.log_lines), (
                f"{job_id} vanished: neither dead-lettered nor completed, and no log line names it"
            )
