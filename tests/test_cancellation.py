"""Cancellation and progress in the dispatcher (lssm_jobs.cancellation), on the memory backend: what the
conformance suite leaves to the core: checks of progress reports, a handler that swallows the
cancellation, a stop racing a cancel, and events."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import pytest
from lssm_jobs.cancellation import CancelResult, check_progress, decode_progress, encode_progress
from lssm_jobs.errors import LssmJobsError
from lssm_jobs.events import Event
from lssm_jobs.jobs import Job, JobCatalog, JobOptions, JobStatus, define_job_type
from lssm_jobs.queue import MemoryJobQueue
from lssm_jobs.testing import run_async
from lssm_jobs.testing.helpers import wait_until


def _queue(**options: Any) -> MemoryJobQueue:
    return MemoryJobQueue(catalog=JobCatalog(), sinks=[], poll_interval=0.05, **options)


@pytest.mark.parametrize(
    ("fraction", "message", "data", "error"),
    [
        (1.5, None, {}, ValueError),
        (-0.1, None, {}, ValueError),
        (math.nan, None, {}, ValueError),
        (True, None, {}, TypeError),
        ("half", None, {}, TypeError),
        (0.5, 7, {}, TypeError),
        (0.5, "x" * 1001, {}, ValueError),
        (0.5, None, {"when": object()}, TypeError),
        (0.5, None, {"big": "x" * 5000}, ValueError),
    ],
)
def test_bad_progress_reports_are_refused(
    fraction: Any, message: Any, data: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        check_progress(fraction, message, data, 0.0)


def test_progress_round_trips_and_unreadable_progress_reads_as_none() -> None:
    report = check_progress(0.25, "a quarter", {"rows": 3}, 12.5)
    assert decode_progress(encode_progress(report)) == report
    assert decode_progress("not json") is None
    assert decode_progress('{"message": "no fraction"}') is None
    assert decode_progress(None) is None


@run_async()
async def test_progress_outside_a_running_handler_is_refused() -> None:
    async with _queue() as queue:
        job = await queue.enqueue("report.build", {})
        with pytest.raises(LssmJobsError, match="only from inside its running handler"):
            await job.progress(0.5)
        assert job.cancelled is False
        job.raise_if_cancelled()  # no request: nothing happens


@run_async()
async def test_a_handler_that_swallows_the_cancellation_completes_and_is_reported() -> None:
    events: list[Event] = []
    started = asyncio.Event()

    async def stubborn(job: Job[Any]) -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # ignores the request and finishes
            await asyncio.sleep(60)
        assert job.cancelled
        await asyncio.sleep(0.01)  # the task still works after the interrupt

    async with _queue() as queue:
        queue.register("report.stubborn", stubborn)
        queue.on("*", events.append)
        job = await queue.enqueue("report.stubborn", {})
        await queue.start()
        await asyncio.wait_for(started.wait(), 5)
        assert await queue.cancel(job.id) is CancelResult.REQUESTED
        await wait_until(lambda: any(e.name == "job.completed" for e in events), message="completed")
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED
    names = [event.name for event in events]
    assert "job.cancel_ignored" in names and "job.cancelled" not in names


@run_async()
async def test_a_cancel_request_beats_retries_and_timeouts() -> None:
    """A handler that times out after a cancel request is cancelled, not retried."""
    catalog = JobCatalog()
    slow = define_job_type(
        type="report.slow", options=JobOptions(timeout_ms=300, max_retries=3, backoff_ms=0), catalog=catalog
    )
    events: list[Event] = []

    def ignores_flag(job: Job[Any]) -> None:
        import time

        time.sleep(0.6)  # a sync handler that never checks job.cancelled, past its timeout

    async with MemoryJobQueue(catalog=catalog, sinks=[], poll_interval=0.05) as queue:
        queue.register(slow, ignores_flag)
        queue.on("*", events.append)
        job = await queue.enqueue(slow, None)
        await queue.start()
        await wait_until(lambda: any(e.name == "job.started" for e in events), message="started")
        assert await queue.cancel(job.id) is CancelResult.REQUESTED
        await wait_until(lambda: any(e.name == "job.cancelled" for e in events), message="cancelled")
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.CANCELLED and stored.attempt == 1
    assert not [event for event in events if event.name in ("job.retrying", "job.timed_out")]


@run_async()
async def test_stopping_the_worker_with_a_cancel_request_pending_cancels_the_job() -> None:
    """The worker stops while a sync handler that ignores the flag runs past the shutdown timeout: the
    job's release turns into its cancellation (it must not run again)."""
    import threading

    go = threading.Event()

    def stuck(job: Job[Any]) -> None:
        go.wait(5)

    async with _queue(shutdown_timeout=0.1) as queue:
        queue.register("report.stuck", stuck)
        job = await queue.enqueue("report.stuck", {})
        await queue.start()

        async def active() -> bool:
            stored = await queue.get(job.id)
            return stored is not None and stored.status is JobStatus.ACTIVE

        await wait_until(active, message="running")
        assert await queue.cancel(job.id) is CancelResult.REQUESTED
        await queue.stop()
        go.set()
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.CANCELLED, stored


@pytest.mark.parametrize("value", [0, -1, "1", True, 5000])
def test_bad_intervals_are_refused(value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="cancel_poll_interval"):
        _queue(cancel_poll_interval=value)
