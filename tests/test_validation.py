"""Typed job definitions and payload validation at enqueue."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import TypedDict

import attrs
import pytest
from lssm_jobs import JobOptions, JobValidationError, define_job_type
from lssm_jobs.errors import JobTypeConflictError, SerializationError
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import EnqueueRequest, MemoryJobQueue
from lssm_jobs.testing import run_async


@attrs.frozen
class Item:
    sku: str
    quantity: int


@attrs.frozen
class Order:
    order_id: uuid.UUID
    placed_at: datetime
    total: Decimal
    items: list[Item]
    note: str | None = None


@dataclasses.dataclass
class Ping:
    host: str
    port: int = 80


class Invite(TypedDict):
    email: str
    admin: bool


def _queue(catalog: JobCatalog) -> MemoryJobQueue:
    return MemoryJobQueue(catalog=catalog, sinks=[])


@run_async()
async def test_every_bad_field_is_named_with_its_path() -> None:
    catalog = JobCatalog()
    order = define_job_type(type="order.place", payload=Order, catalog=catalog)
    async with _queue(catalog) as queue:
        with pytest.raises(JobValidationError) as raised:
            await queue.enqueue(
                order,
                {
                    "order_id": "not-a-uuid",
                    "placed_at": "2026-11-28T10:00:00+00:00",
                    "total": "12.50",
                    "items": [{"sku": "A", "quantity": 1}, {"sku": 7, "quantity": "2"}],
                    "coupon": "X",
                },
            )
        assert await queue.counts() == {}
    error = raised.value
    paths = {field.path for field in error.errors}
    assert {"$.order_id", "$.items[1].sku", "$.items[1].quantity"} <= paths
    assert any("coupon" in field.message for field in error.errors)  # unknown keys are errors, not ignored
    assert "order.place" in str(error) and "$.items[1].sku" in str(error)


@run_async()
async def test_no_silent_coercion() -> None:
    catalog = JobCatalog()
    ping = define_job_type(type="ping", payload=Ping, catalog=catalog)
    async with _queue(catalog) as queue:
        for bad in ({"host": 1}, {"host": "h", "port": "80"}, {"host": "h", "port": True}, {"port": 1}):
            with pytest.raises(JobValidationError):
                await queue.enqueue(ping, bad)
        job = await queue.enqueue(ping, {"host": "example.org"})
    assert job.payload == Ping(host="example.org", port=80)


@run_async()
async def test_rich_types_round_trip_through_json() -> None:
    catalog = JobCatalog()
    order = define_job_type(type="order.rich", payload=Order, catalog=catalog)
    payload = Order(
        order_id=uuid.uuid4(),
        placed_at=datetime(2026, 11, 28, 10, tzinfo=timezone.utc),
        total=Decimal("9.99"),
        items=[Item(sku="A", quantity=2)],
    )
    async with _queue(catalog) as queue:
        job = await queue.enqueue(order, payload)
        stored = await queue.get(job.id)
    assert stored is not None and stored.payload == payload


@run_async()
async def test_typed_dict_payloads() -> None:
    catalog = JobCatalog()
    invite = define_job_type(type="invite", payload=Invite, catalog=catalog)
    async with _queue(catalog) as queue:
        with pytest.raises(JobValidationError) as raised:
            await queue.enqueue(invite, {"email": "a@b.c", "admin": "yes"})
        assert [field.path for field in raised.value.errors] == ["$.admin"]
        job = await queue.enqueue(invite, {"email": "a@b.c", "admin": False})
    assert job.payload == {"email": "a@b.c", "admin": False}


@run_async()
async def test_enqueue_many_is_all_or_nothing() -> None:
    catalog = JobCatalog()
    ping = define_job_type(type="ping.many", payload=Ping, catalog=catalog)
    async with _queue(catalog) as queue:
        with pytest.raises(JobValidationError) as raised:
            await queue.enqueue_many(
                [
                    EnqueueRequest(job_type=ping, payload={"host": "a"}),
                    EnqueueRequest(job_type=ping, payload={"host": 2}),
                ]
            )
        assert raised.value.errors[0].path == "[1].host"
        assert await queue.counts() == {}


@run_async()
async def test_unknown_types_take_any_json_but_not_arbitrary_objects() -> None:
    async with _queue(JobCatalog()) as queue:
        job = await queue.enqueue("other.service.job", {"anything": [1, "two", None]})
        assert job.status is JobStatus.PENDING
        with pytest.raises(SerializationError):
            await queue.enqueue("other.service.job", {"a set": {1, 2}})
        assert sum(per[JobStatus.PENDING] for per in (await queue.counts()).values()) == 1


@run_async()
async def test_enqueue_rejects_bad_timing_arguments() -> None:
    async with _queue(JobCatalog()) as queue:
        with pytest.raises(ValueError, match="not both"):
            await queue.enqueue("x", {}, delay_ms=1, run_at=1.0)
        with pytest.raises(ValueError, match="timezone-aware"):
            await queue.enqueue("x", {}, run_at=datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="delay_ms"):
            await queue.enqueue("x", {}, delay_ms=-5)


def test_job_type_definitions_are_checked() -> None:
    catalog = JobCatalog()
    define_job_type(type="dup", payload=Ping, catalog=catalog)
    define_job_type(type="dup", payload=Ping, catalog=catalog)  # same definition again: fine (re-import)
    with pytest.raises(JobTypeConflictError, match="already defined"):
        define_job_type(type="dup", payload=Item, catalog=catalog)
    with pytest.raises(ValueError):
        define_job_type(type="", catalog=catalog)
    with pytest.raises(ValueError):
        define_job_type(type="v0", version=0, catalog=catalog)
    with pytest.raises(ValueError):
        JobOptions(max_retries=-1)
    newer = define_job_type(type="dup", version=2, payload=Item, catalog=catalog)
    assert catalog.get("dup") is newer


def test_options_on_the_type_are_carried_by_its_jobs() -> None:
    catalog = JobCatalog()
    report = define_job_type(
        type="report.build",
        catalog=catalog,
        options=JobOptions(max_retries=7, timeout_ms=1234, queue="reports", priority=3),
    )

    async def main() -> None:
        async with _queue(catalog) as queue:
            job = await queue.enqueue(report, {})
            assert (job.queue, job.priority, job.max_retries, job.options.timeout_ms) == (
                "reports",
                3,
                7,
                1234,
            )
            override = await queue.enqueue(report, {}, priority=9, queue="urgent", max_retries=0)
            assert (override.queue, override.priority, override.max_retries) == ("urgent", 9, 0)

    import asyncio

    asyncio.run(main())


@attrs.frozen
class Tagged:
    tags: frozenset[str]


@run_async()
async def test_sets_travel_as_json_arrays() -> None:
    catalog = JobCatalog()
    tagged = define_job_type(type="tagged", payload=Tagged, catalog=catalog)
    async with _queue(catalog) as queue:
        job = await queue.enqueue(tagged, Tagged(tags=frozenset({"a", "b"})))
        stored = await queue.get(job.id)
    assert stored is not None and stored.payload == Tagged(tags=frozenset({"a", "b"}))


@run_async()
async def test_meta_must_be_strings_and_enqueue_many_paths_are_indexed() -> None:
    catalog = JobCatalog()
    ping = define_job_type(type="ping.meta", payload=Ping, catalog=catalog)
    async with _queue(catalog) as queue:
        with pytest.raises(TypeError, match="meta keys and values must be strings"):
            await queue.enqueue(ping, {"host": "h"}, meta={"attempt": 5})  # type: ignore[dict-item]
        with pytest.raises(JobValidationError) as raised:
            await queue.enqueue_many([EnqueueRequest(job_type=ping, payload={"host": 1})])
        assert raised.value.errors[0].path == "[0].host"
        assert await queue.counts() == {}


def test_backoff_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="backoff"):
        JobOptions(backoff="exponentail")  # type: ignore[arg-type]
