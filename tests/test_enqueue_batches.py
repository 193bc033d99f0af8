"""enqueue_many on a backend that takes jobs in batches (``push_batch``), and the rare dedupe race.

The memory backend is the real store here; the subclasses only change how many jobs it takes per call,
or make one duplicate vanish at the worst moment, to show what the queue does then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
from lssm_jobs.backends.base import OutgoingJob, PushResult
from lssm_jobs.backends.memory import MemoryBackend
from lssm_jobs.errors import SerializationError
from lssm_jobs.jobs import JobCatalog, JobOptions, JobStatus, define_job_type
from lssm_jobs.queue import EnqueueRequest, JobQueue
from lssm_jobs.testing import run_async


class BatchedMemoryBackend(MemoryBackend):
    """Takes at most three jobs per push and records each call's job ids."""

    push_batch = 3

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        assert len(jobs) <= 3
        self.calls.append([job.id for job in jobs])
        return await super().push(jobs)


def batched_queue() -> tuple[JobQueue, BatchedMemoryBackend]:
    backend = BatchedMemoryBackend()
    return JobQueue(backend, catalog=JobCatalog(), sinks=[]), backend


@run_async()
async def test_batches_go_out_in_order_and_every_job_is_stored() -> None:
    queue, backend = batched_queue()
    async with queue:
        jobs = await queue.enqueue_many([("batch.job", {"n": n}) for n in range(10)])
        assert [job.payload["n"] for job in jobs] == list(range(10))
        assert [len(call) for call in backend.calls] == [3, 3, 3, 1]
        assert [job_id for call in backend.calls for job_id in call] == [job.id for job in jobs]
        for job in jobs:
            stored = await queue.get(job.id)
            assert stored is not None and stored.status is JobStatus.PENDING
            assert stored.payload == job.payload


@run_async()
async def test_a_duplicate_in_a_later_batch_returns_the_live_job() -> None:
    queue, _ = batched_queue()
    async with queue:
        jobs = await queue.enqueue_many(
            [EnqueueRequest(job_type="batch.job", payload={"n": n}, dedupe_key=f"k{n % 4}") for n in range(8)]
        )
        assert [job.id for job in jobs[4:]] == [job.id for job in jobs[:4]]
        assert [job.payload["n"] for job in jobs[4:]] == [0, 1, 2, 3]


@run_async()
async def test_a_payload_that_cannot_be_serialized_stores_nothing() -> None:
    queue, backend = batched_queue()
    async with queue:
        requests: list[Any] = [("batch.job", {"n": n}) for n in range(9)]
        requests.append(("batch.job", {"when": object()}))
        with pytest.raises(SerializationError, match="not JSON-serializable"):
            await queue.enqueue_many(requests)
        assert backend.calls == []
        assert await queue.counts() == {}


@run_async()
async def test_a_run_at_that_is_not_a_finite_time_is_rejected() -> None:
    queue, backend = batched_queue()
    async with queue:
        for bad in (math.inf, math.nan):
            with pytest.raises(ValueError, match="finite"):
                await queue.enqueue("batch.job", {}, run_at=bad)
        assert backend.calls == []


class VanishingDuplicateBackend(MemoryBackend):
    """Its first push reports a duplicate whose holder is already gone (finished and pruned between the
    push and the read-back), which a busy real backend can do."""

    def __init__(self) -> None:
        super().__init__()
        self.pushes = 0

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        self.pushes += 1
        if self.pushes == 1:
            return [PushResult(id="already-pruned", created=False)]
        return await super().push(jobs)


@run_async()
async def test_when_the_live_duplicate_vanishes_the_job_is_pushed_again() -> None:
    backend = VanishingDuplicateBackend()
    queue = JobQueue(backend, catalog=JobCatalog(), sinks=[])
    async with queue:
        job = await queue.enqueue("dedupe.job", {"n": 1}, dedupe_key="k")
        assert backend.pushes == 2
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.PENDING and stored.dedupe_key == "k"


@run_async()
async def test_every_envelope_carries_its_own_times() -> None:
    # Jobs of one call share their creation time object, whose text the serializer keeps: delayed jobs and
    # explicit run_at times in between must still be written with their own times.
    queue, backend = batched_queue()
    requests: list[Any] = []
    for index in range(8):
        if index % 3 == 1:
            requests.append(EnqueueRequest(job_type="timed", payload={"n": index}, delay_ms=60_000))
        elif index % 3 == 2:
            requests.append(EnqueueRequest(job_type="timed", payload={"n": index}, run_at=1_700_000_000.5))
        else:
            requests.append(("timed", {"n": index}))
    async with queue:
        jobs = await queue.enqueue_many(requests)
        later = await queue.enqueue_many([("timed", {"n": 8})])
        for job in [*jobs, *later]:
            stored = await backend.get(job.id)
            assert stored is not None
            envelope = queue.serializer.loads(stored.body)
            assert (envelope.created_at, envelope.run_at) == (job.created_at, job.run_at)
    assert later[0].created_at > jobs[0].created_at
    assert jobs[1].run_at == pytest.approx(jobs[1].created_at + 60)
    assert jobs[2].run_at == 1_700_000_000.5


@attrs.frozen
class Signup:
    email: str
    plan: str = "free"


@run_async()
async def test_pairs_are_stored_exactly_as_single_enqueues_store_them() -> None:
    # enqueue_many prepares (type, payload) pairs inline; what it stores must not differ from enqueue's.
    catalog = JobCatalog()
    typed = define_job_type(type="signup", payload=Signup, catalog=catalog, version=2)
    define_job_type(type="known", catalog=catalog, options=JobOptions(queue="mail", priority=3))
    backend = BatchedMemoryBackend()
    pairs: list[tuple[Any, Any]] = [
        (typed, Signup(email="a@example.com")),
        ("signup", {"email": "b@example.com", "plan": "pro"}),
        ("known", {"n": 1}),
        ("unknown.type", [1, "two"]),
        (typed, {"email": "c@example.com"}),
    ]
    async with JobQueue(backend, catalog=catalog, sinks=[]) as queue:
        many = await queue.enqueue_many(pairs)
        singles = [await queue.enqueue(job_type, payload) for job_type, payload in pairs]
        for batch_job, single_job in zip(many, singles, strict=True):
            stored = [await backend.get(job.id) for job in (batch_job, single_job)]
            envelopes = [queue.serializer.loads(record.body) for record in stored if record is not None]
            assert len(envelopes) == 2
            assert attrs.evolve(envelopes[0], id="", created_at=0.0, run_at=0.0) == attrs.evolve(
                envelopes[1], id="", created_at=0.0, run_at=0.0
            )
            assert attrs.evolve(batch_job, id="", created_at=0.0, run_at=0.0) == attrs.evolve(
                single_job, id="", created_at=0.0, run_at=0.0
            )


@run_async()
async def test_a_request_that_is_not_a_pair_is_refused_by_its_place_and_nothing_is_stored() -> None:
    queue, backend = batched_queue()
    async with queue:
        for bad in (("noop", {"n": 1}, "extra"), "noop", None):
            with pytest.raises(
                TypeError, match=r"request \[1\] must be an EnqueueRequest or a \(type, payload\)"
            ):
                await queue.enqueue_many([("noop", {"n": 0}), bad])
        assert backend.calls == []
