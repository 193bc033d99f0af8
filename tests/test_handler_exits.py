"""A handler's exception of any kind is that job's failure, never the worker's death: SystemExit,
KeyboardInterrupt and other BaseException subclasses raised by handlers (async, or sync in their thread)
are retried and dead-lettered like any error, on the memory and sqlite backends and in a real
``lssm-jobs worker`` process; only the worker's own stop (a signal, ``queue.stop()``) stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lssm_jobs.jobs import Job, JobStatus
from lssm_jobs.queue import JobQueue, open_queue
from lssm_jobs.testing import run_async, wait_until

Factory = Callable[..., JobQueue]


class Stop(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt (like gevent's GreenletExit)."""


def _raiser(error: BaseException, *, is_async: bool) -> Callable[[Job[Any]], Any]:
    if is_async:

        async def async_handler(job: Job[Any]) -> None:
            await asyncio.sleep(0)
            raise error

        return async_handler

    def sync_handler(job: Job[Any]) -> None:
        raise error

    return sync_handler


ERRORS: list[tuple[str, BaseException, str]] = [
    ("exit", SystemExit(3), "SystemExit: 3"),
    ("interrupt", KeyboardInterrupt(), "KeyboardInterrupt"),
    ("stop", Stop("greenlet killed"), "Stop: greenlet killed"),
    ("generator", GeneratorExit(), "GeneratorExit"),
]


@run_async()
async def test_base_exceptions_from_handlers_fail_the_job_and_the_worker_goes_on(make_queue: Factory) -> None:
    ran: list[str] = []
    async with make_queue(lease_ms=1_000) as queue:
        expected: dict[str, str] = {}
        for label, error, description in ERRORS:
            for is_async in (True, False):
                # With and without a timeout: a timeout runs async handlers under asyncio.timeout.
                for timeout_ms in (None, 5_000):
                    name = f"{label}.{'async' if is_async else 'sync'}.{timeout_ms}"
                    queue.register(name, _raiser(error, is_async=is_async))
                    job = await queue.enqueue(name, {}, max_retries=1, timeout_ms=timeout_ms)
                    expected[job.id] = description
        queue.register("healthy", lambda job: ran.append(job.id))
        await queue.start()

        async def all_dead() -> bool:
            return all([(await queue.dead_letters.get(job_id)) is not None for job_id in expected])

        await wait_until(all_dead, timeout=30, message="every failing job dead-lettered")
        assert queue.running
        for job_id, description in expected.items():
            dead = await queue.dead_letters.get(job_id)
            assert dead is not None
            assert (dead.reason, dead.error, dead.attempts) == ("failed after 2 attempts", description, 2)
            assert dead.traceback and description.split(":")[0] in dead.traceback
        healthy = await queue.enqueue("healthy", {})  # the worker still runs jobs
        await wait_until(lambda: healthy.id in ran, message="a healthy job after them")
        assert queue.running


@run_async()
async def test_a_handler_raising_cancelled_error_fails_but_a_stop_releases(make_queue: Factory) -> None:
    started = asyncio.Event()

    async def cancels_itself(job: Job[Any]) -> None:
        raise asyncio.CancelledError("gave up")

    async def runs_long(job: Job[Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    async with make_queue(lease_ms=1_000, shutdown_timeout=0.2) as queue:
        queue.register("cancels", cancels_itself)
        queue.register("long", runs_long)
        own = await queue.enqueue("cancels", {}, max_retries=0)
        long = await queue.enqueue("long", {})
        await queue.start()
        await wait_until(lambda: queue.dead_letters.get(own.id), message="the self-cancelled job is dead")
        dead = await queue.dead_letters.get(own.id)
        assert dead is not None and dead.error == "CancelledError: gave up"
        await asyncio.wait_for(started.wait(), 10)
        await queue.stop()  # past the shutdown timeout: the running job is cancelled and released
        released = await queue.get(long.id)
        assert released is not None
        assert (released.status, released.attempt) == (JobStatus.PENDING, 0)


APP = """
import asyncio
from lssm_jobs.handlers import Handlers

handlers = Handlers()

@handlers.register("exit.async")
async def exit_async(job):
    raise SystemExit(0)

@handlers.register("exit.sync")
def exit_sync(job):
    raise SystemExit("handler called sys.exit")

@handlers.register("interrupt.async")
async def interrupt_async(job):
    raise KeyboardInterrupt

@handlers.register("interrupt.sync")
def interrupt_sync(job):
    raise KeyboardInterrupt

@handlers.register("healthy")
async def healthy(job):
    return None
"""


def _cli(*args: str, cwd: Path, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lssm_jobs.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


@pytest.mark.slow
def test_a_worker_process_survives_handlers_that_exit_and_stops_on_its_own_signal(tmp_path: Path) -> None:
    (tmp_path / "exiting_app.py").write_text(textwrap.dedent(APP))
    database = tmp_path / "jobs.db"

    async def enqueue() -> list[str]:
        async with open_queue("sqlite", path=database, sinks=[]) as queue:
            jobs = [
                await queue.enqueue(name, {}, max_retries=0)
                for name in ("exit.async", "exit.sync", "interrupt.async", "interrupt.sync")
            ]
            return [job.id for job in jobs]

    failing = asyncio.run(enqueue())
    worker = _cli(
        "worker", "exiting_app:handlers", "--url", f"sqlite:///{database}", "--no-progress", cwd=tmp_path
    )
    try:

        async def settled() -> dict[str, Any]:
            async with open_queue("sqlite", path=database, sinks=[]) as queue:
                dead = {job_id: await queue.dead_letters.get(job_id) for job_id in failing}
                if any(letter is None for letter in dead.values()):
                    return {}
                healthy = await queue.enqueue("healthy", {})
                await wait_until(
                    lambda: _status_is(queue, healthy.id, JobStatus.COMPLETED), timeout=20, message="healthy"
                )
                return dead

        deadline = time.monotonic() + 30
        dead: dict[str, Any] = {}
        while not dead:
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the failing jobs were not dead-lettered"
            dead = asyncio.run(settled())
        assert worker.poll() is None  # still running after four handlers tried to exit
        assert sorted(letter.error for letter in dead.values()) == [
            "KeyboardInterrupt",
            "KeyboardInterrupt",
            "SystemExit: 0",
            "SystemExit: handler called sys.exit",
        ]
        worker.send_signal(signal.SIGTERM)  # the worker's own signal still stops it, gracefully
        _, stderr = worker.communicate(timeout=30)
        assert worker.returncode == 0, stderr
        assert "draining" in stderr and "Traceback" not in stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


async def _status_is(queue: JobQueue, job_id: str, status: JobStatus) -> bool:
    job = await queue.get(job_id)
    return job is not None and job.status is status


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@run_async()
async def test_odd_exceptions_and_retry_delays_still_settle_the_job(make_queue: Factory) -> None:
    from lssm_jobs.errors import RetryJob

    async def unprintable(job: Job[Any]) -> None:
        raise Unprintable

    async def retry_far(job: Job[Any]) -> None:
        error = RetryJob("later", delay_ms=1)
        error.delay_ms = 10**400  # set past RetryJob's own check, as a subclass might
        raise error

    async with make_queue() as queue:
        queue.register("unprintable", unprintable)
        queue.register("retry.far", retry_far)
        odd = await queue.enqueue("unprintable", {}, max_retries=0)
        far = await queue.enqueue("retry.far", {})
        await queue.start()
        dead = await wait_until(lambda: queue.dead_letters.get(odd.id), message="dead-lettered")
        assert dead.error == "Unprintable: <the exception's str() failed>"

        async def scheduled() -> Job[Any] | None:
            job = await queue.get(far.id)
            return job if job is not None and job.status is JobStatus.SCHEDULED else None

        retried = await wait_until(scheduled, message="the retry scheduled")
        assert retried.run_at < 2**40  # capped at the longest delay (3650 days)
