"""Event sinks: plugin sinks receive every event, a failing sink never breaks processing, and the logging
sink logs no payloads."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from lssm_jobs.events import EVENT_TYPES, Event, EventSink, LoggingEventSink
from lssm_jobs.jobs import JobCatalog, JobStatus
from lssm_jobs.queue import MemoryJobQueue
from lssm_jobs.testing import run_async, wait_until


class Collecting(EventSink):
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    async def handle(self, event: Event) -> None:
        self.events.append(event)

    async def close(self) -> None:
        self.closed = True


class Exploding(EventSink):
    async def handle(self, event: Event) -> None:
        raise RuntimeError("sink is down")


def test_event_names_are_exact() -> None:
    assert {
        "job.enqueued",
        "job.started",
        "job.completed",
        "job.failed",
        "job.retrying",
        "scheduler.tick",
        "job.dead_lettered",
        "job.timed_out",
    } <= set(EVENT_TYPES)


def test_unknown_event_names_are_rejected() -> None:
    queue = MemoryJobQueue(sinks=[])
    with pytest.raises(ValueError, match=r"unknown event 'job\.complete'"):
        queue.on("job.complete", lambda event: None)


@run_async()
async def test_sinks_receive_events_and_failures_are_isolated(caplog: pytest.LogCaptureFixture) -> None:
    collecting = Collecting()
    queue = MemoryJobQueue(sinks=[Exploding(), collecting], catalog=JobCatalog())
    done: list[Any] = []
    queue.register("sinks.job", lambda job: done.append(job.id))
    async with queue:
        job = await queue.enqueue("sinks.job", {})
        await queue.start()
        await wait_until(lambda: [e for e in collecting.events if e.name == "job.completed"])
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED
    assert collecting.closed
    assert [e.name for e in collecting.events] == ["job.enqueued", "job.started", "job.completed"]
    assert "event sink Exploding failed" in caplog.text


@run_async()
async def test_unsubscribe() -> None:
    queue = MemoryJobQueue(sinks=[], catalog=JobCatalog())
    seen: list[str] = []
    unsubscribe = queue.on("job.enqueued", lambda event: seen.append(event.name))
    async with queue:
        await queue.enqueue("a", {})
        unsubscribe()
        await queue.enqueue("a", {})
    assert seen == ["job.enqueued"]


@run_async()
async def test_logging_sink_never_logs_payloads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="lssm_jobs")
    queue = MemoryJobQueue(sinks=[LoggingEventSink()], catalog=JobCatalog())

    def fail(job: Any) -> None:
        raise RuntimeError("card declined")

    queue.register("charge", fail)
    async with queue:
        job = await queue.enqueue("charge", {"card_number": "4111111111111111"}, max_retries=0)
        await queue.start()
        await wait_until(lambda: queue.dead_letters.get(job.id))
    assert "job.dead_lettered" in caplog.text and job.id in caplog.text and "card declined" in caplog.text
    assert "4111111111111111" not in caplog.text


@run_async()
async def test_a_job_whose_worker_keeps_dying_is_dead_lettered_as_poison() -> None:
    from lssm_jobs.backends.memory import MemoryBackend, MemoryStore
    from lssm_jobs.worker import LOST_WORKER_GRACE

    store = MemoryStore()
    queue = MemoryJobQueue(store=store, sinks=[], catalog=JobCatalog(), lease_ms=200)
    ran: list[int] = []
    queue.register("poison", lambda job: ran.append(job.attempt))
    async with queue:
        job = await queue.enqueue("poison", {}, max_retries=0)
        dying = MemoryBackend(store=store)
        for _ in range(1 + LOST_WORKER_GRACE):  # each lease is lost: the worker "died" every time
            leased = await dying.lease(queues=None, limit=1, lease_ms=1, wait=2.0)
            assert [d.id for d in leased] == [job.id]
        await queue.start()
        dead = await wait_until(lambda: queue.dead_letters.get(job.id), message="poison job dead-lettered")
    assert "poison" in dead.reason and ran == []


def test_sinks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSSM_JOBS_SINKS", "logging")
    assert [type(s).__name__ for s in MemoryJobQueue().events.sinks] == ["LoggingEventSink"]
    monkeypatch.setenv("LSSM_JOBS_SINKS", "nosuch")
    from lssm_jobs.errors import PluginNotFoundError

    with pytest.raises(PluginNotFoundError, match="unknown event sink 'nosuch'"):
        MemoryJobQueue()


@run_async()
async def test_an_upgrader_that_raises_dead_letters_the_job_with_the_reason() -> None:
    from lssm_jobs import define_job_type

    old, new = JobCatalog(), JobCatalog()
    define_job_type(type="profile.sync", version=1, catalog=old)
    define_job_type(type="profile.sync", version=2, catalog=new, upgraders={1: lambda data: data["missing"]})
    async with MemoryJobQueue(catalog=old, sinks=[]) as producer:
        job = await producer.enqueue("profile.sync", {"user": 1})
        store = producer.backend.store  # type: ignore[attr-defined]
    worker = MemoryJobQueue(catalog=new, sinks=[], store=store)
    worker.register("profile.sync", lambda job: None)
    async with worker:
        await worker.start()
        dead = await wait_until(lambda: worker.dead_letters.get(job.id), message="dead-lettered")
    assert dead.reason.startswith("invalid payload: upgrading the payload from version 1 to 2 failed")
    assert "KeyError" in dead.reason


@run_async()
async def test_sync_handlers_get_as_many_threads_as_the_concurrency() -> None:
    import threading

    barrier = threading.Barrier(10, timeout=10)
    passed: list[int] = []
    queue = MemoryJobQueue(sinks=[], catalog=JobCatalog(), concurrency=10)
    queue.register("blocking", lambda job: passed.append(barrier.wait()))
    async with queue:
        await queue.enqueue_many([("blocking", {}) for _ in range(10)])
        await queue.start()
        await wait_until(lambda: len(passed) == 10, timeout=15, message="10 sync handlers at once")
