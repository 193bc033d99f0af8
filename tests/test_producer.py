"""The producer path (``lssm_jobs.producer``): every way of enqueueing builds the same job, field by field.

The hot path builds ``Job`` and ``OutgoingJob`` records with long positional calls (``new_job(...)``,
``new_outgoing_job(...)``: see ``lssm_jobs._slots``). Here every field gets a value no other field has
(distinct integers for version, priority and max_retries; run_at apart from created_at; ...), so an
argument passed in the wrong place shows, on each call site: ``enqueue``, ``enqueue_many`` with requests
and with (type, payload) pairs (its inline path), for the default JSON serializer and for one that encodes
envelopes whole.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from lssm_jobs.backends.base import OutgoingJob, PushResult
from lssm_jobs.backends.memory import MemoryBackend
from lssm_jobs.envelope import Serializer
from lssm_jobs.jobs import Job, JobCatalog, JobOptions, JobStatus, define_job_type
from lssm_jobs.producer import EnqueueRequest
from lssm_jobs.queue import JobQueue
from lssm_jobs.testing import run_async

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class Shipment:
    order: str
    boxes: int


class RecordingBackend(MemoryBackend):
    """The memory backend, keeping every OutgoingJob it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.pushed: list[OutgoingJob] = []

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        self.pushed.extend(jobs)
        return await super().push(jobs)


class ReversedJson(Serializer):
    """Not the JSON serializer: it encodes the whole envelope at once (the base class's two steps)."""

    name = "reversed-json"
    content_type = "application/x-reversed-json"

    def encode(self, data: Mapping[str, Any]) -> bytes:
        return json.dumps(data).encode()[::-1]

    def decode(self, raw: bytes) -> Any:
        return json.loads(raw[::-1])


# Every field distinct: version 3, type options priority 11 / max_retries 5 / timeout 2345 / queue "ships".
TYPE_OPTIONS = JobOptions(queue="ships", priority=11, max_retries=5, timeout_ms=2345)


def _queue(serializer: Serializer | None) -> tuple[JobQueue, RecordingBackend, Any]:
    catalog = JobCatalog()
    ship = define_job_type(
        type="order.ship", version=3, payload=Shipment, options=TYPE_OPTIONS, catalog=catalog
    )
    backend = RecordingBackend()
    options: dict[str, Any] = {"catalog": catalog, "sinks": []}
    if serializer is not None:
        options["serializer"] = serializer
    return JobQueue(backend, **options), backend, ship


def _check_outgoing(queue: JobQueue, job: Job[Any], outgoing: OutgoingJob) -> None:
    """The stored record and its envelope carry the job's own fields."""
    assert (
        outgoing.id,
        outgoing.type,
        outgoing.queue,
        outgoing.priority,
        outgoing.run_at,
        outgoing.created_at,
        outgoing.dedupe_key,
    ) == (job.id, job.type, job.queue, job.priority, job.run_at, job.created_at, job.dedupe_key)
    envelope = queue.serializer.loads(outgoing.body)
    assert (
        envelope.id,
        envelope.type,
        envelope.version,
        envelope.queue,
        envelope.priority,
        envelope.options,
        envelope.dedupe_key,
        envelope.created_at,
        envelope.run_at,
        dict(envelope.meta),
    ) == (
        job.id,
        job.type,
        job.version,
        job.queue,
        job.priority,
        job.options,
        job.dedupe_key,
        job.created_at,
        job.run_at,
        dict(job.meta),
    )
    assert envelope.payload == {"order": job.payload.order, "boxes": job.payload.boxes}


SERIALIZERS = [pytest.param(None, id="json"), pytest.param(ReversedJson(), id="whole-envelope")]


@pytest.mark.parametrize("serializer", SERIALIZERS)
@run_async()
async def test_every_field_of_an_enqueue_with_options_lands_in_its_place(serializer: Serializer | None) -> None:
    queue, backend, ship = _queue(serializer)
    async with queue:
        before = time.time()
        run_at = before + 1000.5
        job = await queue.enqueue(
            ship,
            Shipment(order="A-1", boxes=2),
            run_at=run_at,
            priority=7,
            dedupe_key="ship:A-1",
            queue="ships-eu",
            max_retries=9,
            timeout_ms=1234,
            meta={"trace": "t-1"},
        )
        assert len(job.id) == 32 and int(job.id, 16) >= 0
        assert (job.type, job.version, job.payload) == ("order.ship", 3, Shipment(order="A-1", boxes=2))
        assert (job.queue, job.status, job.attempt, job.max_retries, job.priority) == (
            "ships-eu",
            JobStatus.SCHEDULED,
            0,
            9,
            7,
        )
        assert before <= job.created_at <= time.time() and job.run_at == run_at
        assert (job.dedupe_key, job.last_error, dict(job.meta)) == ("ship:A-1", None, {"trace": "t-1"})
        assert job.options == attrs.evolve(TYPE_OPTIONS, max_retries=9, timeout_ms=1234)
        (outgoing,) = backend.pushed
        _check_outgoing(queue, job, outgoing)
        stored = await queue.get(job.id)
        assert stored == job


@pytest.mark.parametrize("serializer", SERIALIZERS)
@run_async()
async def test_every_field_of_a_default_enqueue_comes_from_the_job_type(serializer: Serializer | None) -> None:
    queue, backend, ship = _queue(serializer)
    async with queue:
        job = await queue.enqueue(ship, Shipment(order="B-2", boxes=4))
        assert (job.type, job.version, job.queue, job.status, job.attempt) == (
            "order.ship",
            3,
            "ships",
            JobStatus.PENDING,
            0,
        )
        assert (job.max_retries, job.priority, job.run_at, job.dedupe_key, job.last_error) == (
            5,
            11,
            job.created_at,
            None,
            None,
        )
        assert job.options is TYPE_OPTIONS and dict(job.meta) == {}
        (outgoing,) = backend.pushed
        _check_outgoing(queue, job, outgoing)
        assert await queue.get(job.id) == job


@pytest.mark.parametrize("serializer", SERIALIZERS)
@run_async()
async def test_enqueue_many_builds_the_same_jobs_on_both_of_its_paths(serializer: Serializer | None) -> None:
    queue, backend, ship = _queue(serializer)
    async with queue:
        # pairs take the inline path; requests go through prepare, like enqueue
        jobs = await queue.enqueue_many(
            [
                (ship, {"order": "C-1", "boxes": 1}),
                ("order.ship", Shipment(order="C-2", boxes=2)),
                EnqueueRequest(job_type=ship, payload=Shipment(order="C-3", boxes=3), priority=6, queue="q3"),
            ]
        )
        assert len({job.id for job in jobs}) == 3
        for job, outgoing in zip(jobs, backend.pushed, strict=True):
            _check_outgoing(queue, job, outgoing)
            assert await queue.get(job.id) == job
        first, second, third = jobs
        for job in (first, second):
            assert (job.version, job.queue, job.max_retries, job.priority, job.status) == (
                3,
                "ships",
                5,
                11,
                JobStatus.PENDING,
            )
            assert job.run_at == job.created_at and job.options is TYPE_OPTIONS and job.attempt == 0
        assert (third.queue, third.priority, third.max_retries) == ("q3", 6, 5)
        assert first.payload == Shipment(order="C-1", boxes=1)


@run_async()
async def test_meta_providers_reach_the_envelope_on_every_path() -> None:
    queue, backend, ship = _queue(None)
    queue.meta_providers.append(lambda job_id, name, queue_name: {"seen": f"{name}@{queue_name}"})
    async with queue:
        single = await queue.enqueue(ship, Shipment(order="D-1", boxes=1))
        (pair,) = await queue.enqueue_many([(ship, Shipment(order="D-2", boxes=1))])
        for job, outgoing in zip((single, pair), backend.pushed, strict=True):
            assert dict(job.meta) == {"seen": "order.ship@ships"}
            _check_outgoing(queue, job, outgoing)


def _foreign_private_uses(path: Path) -> list[str]:
    """``x._name`` uses in ``path`` where ``x`` is not ``self`` or ``cls`` (another object's private parts)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


def test_the_blocking_facades_use_no_private_parts_of_other_modules() -> None:
    # The blocking queue goes through the queue's producer; the Redis pusher through the backend's public
    # push interface; redis-py's private parts are reached in lssm_jobs_redis.internals only.
    paths = [
        ROOT / "core" / "lssm_jobs" / "blocking.py",
        ROOT / "core" / "lssm_jobs" / "producer.py",
        ROOT / "plugins" / "redis" / "lssm_jobs_redis" / "blocking.py",
    ]
    assert [use for path in paths for use in _foreign_private_uses(path)] == []


def test_the_queue_knows_no_serializer_by_type() -> None:
    # The JSON speed-ups live behind the Serializer interface (encode_job / job_bytes).
    for name in ("queue.py", "producer.py", "blocking.py"):
        source = (ROOT / "core" / "lssm_jobs" / name).read_text()
        assert "JsonSerializer" not in source, name
        assert "type(body) is str" not in source, name
