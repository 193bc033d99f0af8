"""The job ledger contract suite: what every :class:`~lssm_jobs.ledger.base.JobLedger` does.

Subclass :class:`LedgerConformance` and provide a fixture ``lssm_jobs_ledger_factory`` returning a
zero-argument callable that makes new, unopened ledgers; ledgers made by one factory share their storage
(like several processes on one database), and each factory is isolated from other tests::

    @pytest.fixture
    def lssm_jobs_ledger_factory(tmp_path):
        return lambda: SqliteLedger(path=tmp_path / "ledger.db")

    class TestSqliteLedger(LedgerConformance):
        pass
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from lssm_jobs.backends.base import OutgoingJob
from lssm_jobs.errors import DedupeConflictError
from lssm_jobs.jobs import JobStatus
from lssm_jobs.ledger.base import FIRST_GENERATION, Claim, ClaimOutcome, JobLedger
from lssm_jobs.testing.helpers import raw_job, run_async

LedgerFactory = Callable[[], JobLedger]

LEASE_MS = 30_000


def outgoing(
    *,
    queue: str = "default",
    delay: float = 0.0,
    priority: int = 0,
    dedupe_key: str | None = None,
    body: bytes | None = None,
    job_id: str | None = None,
) -> OutgoingJob:
    """A job as a backend hands it to :meth:`JobLedger.record`."""
    return raw_job(
        type="ledger.test",
        queue=queue,
        priority=priority,
        run_at=time.time() + delay,
        dedupe_key=dedupe_key,
        body=body if body is not None else b'{"v": 1}',
        job_id=job_id,
    )


@asynccontextmanager
async def _opened(factory: LedgerFactory) -> AsyncIterator[JobLedger]:
    ledger = factory()
    await ledger.open()
    try:
        yield ledger
    finally:
        await ledger.close()


async def _run(ledger: JobLedger, job: OutgoingJob, generation: int = FIRST_GENERATION) -> Claim:
    claim = await ledger.begin(job.id, generation=generation, lease_ms=LEASE_MS)
    assert claim.outcome is ClaimOutcome.RUN, claim
    assert claim.token is not None
    return claim


class LedgerConformance:
    """The contract every job ledger meets. Requires fixture ``lssm_jobs_ledger_factory``."""

    # -- records ---------------------------------------------------------------------------------------------

    @run_async()
    async def test_record_then_get_and_counts(self, lssm_jobs_ledger_factory: LedgerFactory) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            now_job = outgoing(queue="mail", body=b"\xff\x00verbatim")
            later_job = outgoing(queue="mail", delay=60)
            results = await ledger.record([now_job, later_job])
            assert [(r.id, r.created) for r in results] == [(now_job.id, True), (later_job.id, True)]
            record = await ledger.get(now_job.id)
            assert record is not None
            assert (record.status, record.attempts, record.queue, record.type) == (
                JobStatus.PENDING,
                0,
                "mail",
                "ledger.test",
            )
            assert record.body == b"\xff\x00verbatim" and record.run_at == pytest.approx(now_job.run_at)
            later = await ledger.get(later_job.id)
            assert later is not None and later.status is JobStatus.SCHEDULED
            assert await ledger.get(uuid.uuid4().hex) is None
            counts = await ledger.counts()
            assert counts["mail"] == {JobStatus.PENDING: 1, JobStatus.SCHEDULED: 1}

    @run_async()
    async def test_ledgers_from_one_factory_share_records(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as first, _opened(lssm_jobs_ledger_factory) as second:
            job = outgoing()
            await first.record([job])
            claim = await _run(second, job)
            assert await first.complete(job.id, claim.token or "")
            record = await second.get(job.id)
            assert record is not None and record.status is JobStatus.COMPLETED

    @run_async()
    async def test_recording_an_id_twice_stores_it_once(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            job = outgoing()
            await ledger.record([job])
            (again,) = await ledger.record([job])
            assert (again.id, again.created) == (job.id, False)
            assert sum((await ledger.counts())["default"].values()) == 1

    # -- dedupe ------------------------------------------------------------------------------------------------

    @run_async()
    async def test_dedupe_key_names_the_live_job_until_it_finishes(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            key = f"report:{uuid.uuid4().hex[:8]}"
            first, second = outgoing(dedupe_key=key), outgoing(dedupe_key=key)
            results = await ledger.record([first, second])
            assert [(r.id, r.created) for r in results] == [(first.id, True), (first.id, False)]
            assert await ledger.get(second.id) is None
            claim = await _run(ledger, first)
            (while_active,) = await ledger.record([outgoing(dedupe_key=key)])
            assert (while_active.id, while_active.created) == (first.id, False)
            assert await ledger.complete(first.id, claim.token or "")
            third = outgoing(dedupe_key=key)
            (after,) = await ledger.record([third])
            assert (after.id, after.created) == (third.id, True)
            claim = await _run(ledger, third)
            assert await ledger.dead_letter(
                third.id, claim.token or "", reason="r", error=None, traceback=None
            )
            fourth = outgoing(dedupe_key=key)
            assert (await ledger.record([fourth]))[0].created  # a dead letter frees its key too

    @run_async()
    async def test_concurrent_records_with_one_key_store_one_job(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        key = f"race:{uuid.uuid4().hex[:8]}"
        async with _opened(lssm_jobs_ledger_factory) as first, _opened(lssm_jobs_ledger_factory) as second:
            jobs = [outgoing(dedupe_key=key) for _ in range(8)]
            batches = await asyncio.gather(
                *((first if index % 2 else second).record([job]) for index, job in enumerate(jobs))
            )
            results = [batch[0] for batch in batches]
            created = [result for result in results if result.created]
            assert len(created) == 1
            assert {result.id for result in results} == {created[0].id}

    @run_async()
    async def test_discard_undoes_a_record_and_frees_its_key(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            key = f"undo:{uuid.uuid4().hex[:8]}"
            failed, running = outgoing(dedupe_key=key), outgoing()
            await ledger.record([failed, running])
            await _run(ledger, running)
            assert await ledger.discard([failed.id, running.id, uuid.uuid4().hex]) == 1
            assert await ledger.get(failed.id) is None
            running_record = await ledger.get(running.id)
            assert running_record is not None and running_record.status is JobStatus.ACTIVE
            assert (await ledger.record([outgoing(dedupe_key=key)]))[0].created

    # -- claims ------------------------------------------------------------------------------------------------

    @run_async()
    async def test_one_delivery_at_a_time_runs_a_job(self, lssm_jobs_ledger_factory: LedgerFactory) -> None:
        async with _opened(lssm_jobs_ledger_factory) as first, _opened(lssm_jobs_ledger_factory) as second:
            job = outgoing()
            await first.record([job])
            claims = await asyncio.gather(
                *(
                    (first if index % 2 else second).begin(job.id, generation=1, lease_ms=LEASE_MS)
                    for index in range(10)
                )
            )
            outcomes = sorted(claim.outcome.value for claim in claims)
            assert outcomes == ["busy"] * 9 + ["run"]
            winner = next(claim for claim in claims if claim.outcome is ClaimOutcome.RUN)
            assert winner.attempt == 1 and winner.body == job.body and winner.queue == "default"
            record = await first.get(job.id)
            assert record is not None and (record.status, record.attempts) == (JobStatus.ACTIVE, 1)

    @run_async()
    async def test_duplicate_delivery_of_a_settled_job_is_finished(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            done, dead = outgoing(), outgoing()
            await ledger.record([done, dead])
            claim = await _run(ledger, done)
            assert await ledger.complete(done.id, claim.token or "")
            claim = await _run(ledger, dead)
            assert await ledger.dead_letter(dead.id, claim.token or "", reason="r", error="e", traceback=None)
            for job in (done, dead):
                again = await ledger.begin(job.id, generation=1, lease_ms=LEASE_MS)
                assert again.outcome is ClaimOutcome.FINISHED
            # a newer generation is a carrier the ledger has not heard of yet (a replay in flight)
            replaying = await ledger.begin(dead.id, generation=claim.next_generation, lease_ms=LEASE_MS)
            assert replaying.outcome is ClaimOutcome.EARLY
            record = await ledger.get(done.id)
            assert record is not None and record.attempts == 1  # the duplicate counted nothing
            unknown = await ledger.begin(uuid.uuid4().hex, generation=1, lease_ms=LEASE_MS)
            assert unknown.outcome is ClaimOutcome.UNKNOWN

    @run_async()
    async def test_expired_lease_lets_the_next_delivery_run(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            job = outgoing()
            await ledger.record([job])
            dead_worker = await ledger.begin(job.id, generation=1, lease_ms=200)
            assert dead_worker.outcome is ClaimOutcome.RUN
            assert (await ledger.begin(job.id, generation=1, lease_ms=200)).outcome is ClaimOutcome.BUSY
            await asyncio.sleep(0.3)
            taken = await _run(ledger, job)
            assert taken.attempt == 2 and taken.token != dead_worker.token
            # the dead worker's late settle changes nothing
            assert not await ledger.complete(job.id, dead_worker.token or "")
            assert not await ledger.extend(job.id, dead_worker.token or "", lease_ms=LEASE_MS)
            assert await ledger.extend(job.id, taken.token or "", lease_ms=LEASE_MS)
            record = await ledger.get(job.id)
            assert record is not None and record.status is JobStatus.ACTIVE

    @run_async()
    async def test_extend_keeps_the_lease(self, lssm_jobs_ledger_factory: LedgerFactory) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            job = outgoing()
            await ledger.record([job])
            claim = await ledger.begin(job.id, generation=1, lease_ms=300)
            for _ in range(3):
                await asyncio.sleep(0.15)
                assert await ledger.extend(job.id, claim.token or "", lease_ms=300)
            assert (await ledger.begin(job.id, generation=1, lease_ms=300)).outcome is ClaimOutcome.BUSY

    @run_async()
    async def test_stale_tokens_change_nothing(self, lssm_jobs_ledger_factory: LedgerFactory) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            job = outgoing()
            await ledger.record([job])
            claim = await _run(ledger, job)
            wrong = uuid.uuid4().hex
            assert not await ledger.complete(job.id, wrong)
            assert not await ledger.reschedule(job.id, wrong, run_at=time.time(), error="x", generation=2)
            assert not await ledger.release(job.id, wrong)
            assert not await ledger.dead_letter(job.id, wrong, reason="r", error=None, traceback=None)
            assert not await ledger.complete(uuid.uuid4().hex, claim.token or "")
            record = await ledger.get(job.id)
            assert record is not None and (record.status, record.attempts) == (JobStatus.ACTIVE, 1)

    @run_async()
    async def test_scheduled_job_is_not_due_before_its_time(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            later, soon = outgoing(delay=60), outgoing(delay=0.5)
            await ledger.record([later, soon])
            claim = await ledger.begin(later.id, generation=1, lease_ms=LEASE_MS)
            assert claim.outcome is ClaimOutcome.NOT_DUE and claim.run_at == pytest.approx(later.run_at)
            # within the clock tolerance a delivery runs (the service's clock decides when it is due)
            assert (await ledger.begin(soon.id, generation=1, lease_ms=LEASE_MS)).outcome is ClaimOutcome.RUN
            record = await ledger.get(later.id)
            assert record is not None and (record.status, record.attempts) == (JobStatus.SCHEDULED, 0)

    # -- settling ----------------------------------------------------------------------------------------------

    @run_async()
    async def test_reschedule_hands_the_job_to_its_successor_generation(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            job = outgoing()
            await ledger.record([job])
            first = await _run(ledger, job)
            assert first.next_generation > FIRST_GENERATION
            retry_at = time.time() + 0.2
            assert await ledger.reschedule(
                job.id, first.token or "", run_at=retry_at, error="boom", generation=first.next_generation
            )
            record = await ledger.get(job.id)
            assert record is not None
            assert (record.status, record.attempts, record.last_error) == (JobStatus.SCHEDULED, 1, "boom")
            stale = await ledger.begin(job.id, generation=1, lease_ms=LEASE_MS)
            assert stale.outcome is ClaimOutcome.SUPERSEDED and stale.generation == first.next_generation
            ahead = await ledger.begin(job.id, generation=first.next_generation + 1, lease_ms=LEASE_MS)
            assert ahead.outcome is ClaimOutcome.EARLY
            second = await _run(ledger, job, first.next_generation)
            assert second.attempt == 2
            assert second.next_generation > first.next_generation  # successors never share a generation
            # a reschedule without a successor keeps the current generation delivering it
            assert await ledger.reschedule(
                job.id, second.token or "", run_at=time.time(), error="again", generation=None
            )
            third = await _run(ledger, job, first.next_generation)
            assert third.attempt == 3

    @run_async()
    async def test_release_does_not_count_the_attempt(self, lssm_jobs_ledger_factory: LedgerFactory) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            job = outgoing()
            await ledger.record([job])
            claim = await _run(ledger, job)
            assert await ledger.release(job.id, claim.token or "")
            record = await ledger.get(job.id)
            assert record is not None and (record.status, record.attempts) == (JobStatus.PENDING, 0)
            again = await _run(ledger, job)
            assert again.attempt == 1

    # -- dead letters ------------------------------------------------------------------------------------------

    @run_async()
    async def test_dead_letters_are_listed_with_why(self, lssm_jobs_ledger_factory: LedgerFactory) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            jobs = [outgoing(queue="dlq", body=f"body-{index}".encode()) for index in range(3)]
            await ledger.record(jobs)
            for index, job in enumerate(jobs):
                claim = await _run(ledger, job)
                assert await ledger.dead_letter(
                    job.id, claim.token or "", reason=f"reason {index}", error=f"E{index}", traceback="tb"
                )
                await asyncio.sleep(0.01)
            listed = await ledger.list_dead()
            assert [dead.id for dead in listed] == [job.id for job in reversed(jobs)]
            assert [dead.id for dead in await ledger.list_dead(limit=2)] == [jobs[2].id, jobs[1].id]
            assert [dead.id for dead in await ledger.list_dead(offset=1)] == [jobs[1].id, jobs[0].id]
            assert [dead.id for dead in await ledger.list_dead(limit=1, offset=1)] == [jobs[1].id]
            assert await ledger.list_dead(offset=3) == []
            dead = await ledger.get_dead(jobs[0].id)
            assert dead is not None
            assert (dead.reason, dead.error, dead.traceback, dead.attempts, dead.body, dead.queue) == (
                "reason 0",
                "E0",
                "tb",
                1,
                b"body-0",
                "dlq",
            )
            record = await ledger.get(jobs[0].id)
            assert record is not None and record.status is JobStatus.DEAD
            assert (await ledger.counts())["dlq"] == {JobStatus.DEAD: 3}
            assert await ledger.get_dead(uuid.uuid4().hex) is None

    @run_async()
    async def test_dead_letter_is_reported_by_get_as_it_died(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        """``get`` of a dead letter: status dead, its queue, priority, dedupe key (freed, yet still shown),
        body and attempts as when it died, and the dead letter's error as ``last_error`` (not an earlier
        attempt's); ``get_dead`` of a job that is not dead is None."""
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            key = f"card:{uuid.uuid4().hex[:8]}"
            job = outgoing(queue="billing", priority=3, dedupe_key=key, body=b"\x00charge")
            waiting = outgoing(queue="billing")
            await ledger.record([job, waiting])
            first = await _run(ledger, job)
            assert await ledger.reschedule(
                job.id, first.token or "", run_at=time.time(), error="timeout", generation=None
            )
            assert await ledger.get_dead(job.id) is None  # scheduled for a retry: not dead
            second = await _run(ledger, job)
            assert await ledger.get_dead(job.id) is None  # running: not dead
            assert await ledger.dead_letter(
                job.id, second.token or "", reason="permanent", error="card declined", traceback="tb"
            )
            record = await ledger.get(job.id)
            assert record is not None
            assert (record.status, record.queue, record.priority, record.dedupe_key, record.attempts) == (
                JobStatus.DEAD,
                "billing",
                3,
                key,
                2,
            )
            assert (record.body, record.last_error, record.type) == (b"\x00charge", "card declined", job.type)
            dead = await ledger.get_dead(job.id)
            assert dead is not None and (dead.error, dead.attempts) == (record.last_error, 2)
            assert await ledger.get_dead(waiting.id) is None

    @run_async()
    async def test_replay_moves_a_dead_letter_back(self, lssm_jobs_ledger_factory: LedgerFactory) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            job = outgoing()
            await ledger.record([job])
            claim = await _run(ledger, job)
            await ledger.dead_letter(job.id, claim.token or "", reason="r", error="e", traceback=None)
            generation = await ledger.reserve_generation(job.id)
            assert generation is not None and generation > claim.next_generation
            assert await ledger.reserve_generation(uuid.uuid4().hex) is None
            run_at = time.time() + 0.2
            assert await ledger.replay_dead(job.id, run_at=run_at, generation=generation)
            assert not await ledger.replay_dead(job.id, run_at=run_at, generation=generation)
            assert not await ledger.replay_dead(uuid.uuid4().hex, run_at=run_at, generation=generation)
            assert await ledger.get_dead(job.id) is None
            record = await ledger.get(job.id)
            assert record is not None and (record.status, record.attempts) == (JobStatus.SCHEDULED, 0)
            assert (
                await ledger.begin(job.id, generation=1, lease_ms=LEASE_MS)
            ).outcome is ClaimOutcome.SUPERSEDED
            replayed = await _run(ledger, job, generation)
            assert replayed.attempt == 1

    @run_async()
    async def test_replay_refuses_a_dedupe_key_held_by_a_live_job(
        self, lssm_jobs_ledger_factory: LedgerFactory
    ) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            key = f"once:{uuid.uuid4().hex[:8]}"
            dead_job = outgoing(dedupe_key=key)
            await ledger.record([dead_job])
            claim = await _run(ledger, dead_job)
            await ledger.dead_letter(dead_job.id, claim.token or "", reason="r", error=None, traceback=None)
            live = outgoing(dedupe_key=key)
            assert (await ledger.record([live]))[0].created
            generation = await ledger.reserve_generation(dead_job.id)
            assert generation is not None
            with pytest.raises(DedupeConflictError) as raised:
                await ledger.replay_dead(dead_job.id, run_at=time.time(), generation=generation)
            assert raised.value.live_job_id == live.id and raised.value.dedupe_key == key
            assert await ledger.get_dead(dead_job.id) is not None  # it stays where it is
            live_claim = await _run(ledger, live)
            await ledger.complete(live.id, live_claim.token or "")
            assert await ledger.replay_dead(dead_job.id, run_at=time.time(), generation=generation)
            (holder,) = await ledger.record([outgoing(dedupe_key=key)])
            assert (holder.id, holder.created) == (dead_job.id, False)  # the replay keeps its key

    @run_async()
    async def test_purge_dead(self, lssm_jobs_ledger_factory: LedgerFactory) -> None:
        async with _opened(lssm_jobs_ledger_factory) as ledger:
            jobs = [outgoing() for _ in range(3)]
            live = outgoing()
            await ledger.record([*jobs, live])
            for job in jobs:
                claim = await _run(ledger, job)
                await ledger.dead_letter(job.id, claim.token or "", reason="r", error=None, traceback=None)
            assert await ledger.purge_dead([jobs[0].id, live.id, uuid.uuid4().hex]) == 1
            assert await ledger.get(jobs[0].id) is None
            assert await ledger.get(live.id) is not None
            assert await ledger.purge_dead() == 2
            assert await ledger.list_dead() == []


def ledger_test_names() -> list[str]:
    """Names of every ledger conformance test (used by the docs check)."""
    return sorted(name for name in vars(LedgerConformance) if name.startswith("test_"))
