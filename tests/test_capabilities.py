"""Backend capabilities are read: an enqueue option a backend declares it cannot honour is refused with one
clear error and nothing stored, and ``lssm-jobs plugins`` shows what each backend supports."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from lssm_jobs.backends.base import BackendCapabilities
from lssm_jobs.backends.memory import MemoryBackend
from lssm_jobs.cli import main
from lssm_jobs.cli.output import describe_capabilities
from lssm_jobs.errors import LssmJobsError, UnsupportedOptionError
from lssm_jobs.jobs import Job, JobCatalog, JobStatus
from lssm_jobs.queue import EnqueueRequest, JobQueue
from lssm_jobs.testing import run_async
from lssm_jobs.testing.helpers import wait_until


class PlainBackend(MemoryBackend):
    """A memory backend that declares no delay, priority or dedupe (as a bare cloud queue might)."""

    name = "plain"
    capabilities = BackendCapabilities(delay=False, priority=False, dedupe=False, durable=False, shared=False)


def _queue() -> JobQueue:
    return JobQueue(PlainBackend(), catalog=JobCatalog(), sinks=[])


@pytest.mark.parametrize(
    ("options", "capability"),
    [
        ({"delay_ms": 5_000}, "delay"),
        ({"run_at": datetime.now(timezone.utc) + timedelta(hours=1)}, "delay"),
        ({"priority": 5}, "priority"),
        ({"dedupe_key": "once"}, "dedupe"),
    ],
)
@run_async()
async def test_an_option_the_backend_cannot_honour_is_refused(
    options: dict[str, object], capability: str
) -> None:
    async with _queue() as queue:
        with pytest.raises(UnsupportedOptionError, match=rf"backend 'plain' .* {capability}=False"):
            await queue.enqueue("report.build", {"id": 1}, **options)  # type: ignore[arg-type]
        assert await queue.counts() == {}


@run_async()
async def test_what_the_backend_supports_goes_through() -> None:
    async with _queue() as queue:
        await queue.enqueue("report.build", {"id": 1})
        await queue.enqueue("report.build", {"id": 2}, delay_ms=0, queue="reports", max_retries=1)
        counts = await queue.counts()
    assert sum(sum(per.values()) for per in counts.values()) == 2


@run_async()
async def test_a_batch_with_one_unsupported_request_stores_nothing() -> None:
    async with _queue() as queue:
        requests = [
            EnqueueRequest(job_type="report.build", payload={"id": 1}),
            EnqueueRequest(job_type="report.build", payload={"id": 2}, delay_ms=60_000),
        ]
        with pytest.raises(UnsupportedOptionError, match="delayed job"):
            await queue.enqueue_many(requests)
        assert await queue.counts() == {}


def test_plugins_shows_what_each_backend_supports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert (
        "memory supports: pull delivery; delay, priority, fifo, dedupe, leases, purge_queue, cancel, "
        "progress, worker_registry, results; not durable, one process only" in text
    )
    assert (
        "sqlite supports: pull delivery; delay, priority, fifo, dedupe, leases, purge_queue, cancel, "
        "progress, worker_registry, results; durable, shared by processes" in text
    )
    assert main(["plugins", "--json"]) == 0
    backends = json.loads(capsys.readouterr().out)["backends"]
    assert backends["memory"]["capabilities"] == {
        "delivery": "pull",
        "delay": True,
        "priority": True,
        "fifo": True,
        "dedupe": True,
        "leases": True,
        "native_dlq": False,
        "durable": False,
        "shared": False,
        "purge_queue": True,
        "cancel": True,
        "progress": True,
        "worker_registry": True,
        "results": True,
    }
    assert "path" in backends["sqlite"]["options"]


@run_async()
async def test_cancel_and_progress_on_a_backend_without_them_are_refused() -> None:
    """A backend whose capabilities say cancel=False and progress=False: ``queue.cancel`` raises one clear
    error and changes nothing; ``job.progress`` in a handler raises, which is that job's failure."""
    errors: list[BaseException] = []

    async def reports(job: Job[Any]) -> None:
        try:
            await job.progress(0.5)
        except LssmJobsError as error:
            errors.append(error)
            raise

    async with _queue() as queue:
        job = await queue.enqueue("report.build", {"id": 1})
        with pytest.raises(
            UnsupportedOptionError, match=r"backend 'plain' cannot cancel jobs: .* cancel=False"
        ):
            await queue.cancel(job.id)
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.PENDING
        queue.register("report.build", reports)
        await queue.start()
        await wait_until(lambda: errors, message="the handler's progress report refused")
    assert isinstance(errors[0], UnsupportedOptionError)
    assert "backend 'plain' cannot store job progress: its capabilities declare progress=False" in str(errors[0])


def test_a_backend_without_an_order_says_so() -> None:
    unordered = BackendCapabilities(delivery="stream", priority=False, fifo=False, native_dlq=True)
    assert describe_capabilities(unordered) == (
        "stream delivery; delay, dedupe, leases, native_dlq; no priority, no fifo; durable, shared by processes"
    )
