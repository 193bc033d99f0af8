"""Small helpers for testing with lssm-jobs: running coroutines from sync tests, polling with a deadline."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from lssm_jobs.backends.base import OutgoingJob, QueueBackend

T = TypeVar("T")
B = TypeVar("B", bound=QueueBackend)


def run_async(timeout: float = 60.0) -> Callable[[Callable[..., Coroutine[Any, Any, T]]], Callable[..., T]]:
    """Turn an ``async def`` test into a plain one that runs it in a fresh event loop, bounded by ``timeout``.

    Needs no pytest async plugin, so the conformance suite runs anywhere pytest does.
    """

    def decorate(test: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> T:
            # A test class may raise the bound for slow services (BackendConformance.conformance_timeout).
            limit = getattr(args[0], "conformance_timeout", timeout) if args else timeout

            async def bounded() -> T:
                return await asyncio.wait_for(test(*args, **kwargs), limit)

            return asyncio.run(bounded())

        return run

    return decorate


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that value.

    :raises TimeoutError: not true within ``timeout`` seconds (the message says what was awaited).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout}s")
        await asyncio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """:func:`wait_until` for code without an event loop (tests driving subprocesses): poll ``predicate``
    until it returns something truthy, sleeping ``interval`` between tries; return that value.

    :raises TimeoutError: not true within ``timeout`` seconds (the message says what was awaited).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


@asynccontextmanager
async def opened(backend: B) -> AsyncIterator[B]:
    """Open ``backend`` and always close it: ``async with opened(SqliteBackend(path)) as backend: ...``."""
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def raw_job(
    *,
    type: str = "conformance.raw",
    queue: str = "default",
    priority: int = 0,
    run_at: float | None = None,
    dedupe_key: str | None = None,
    body: bytes = b"{}",
    job_id: str | None = None,
) -> OutgoingJob:
    """A job to push straight into a backend or ledger (its body is never decoded): due now unless
    ``run_at`` says otherwise, with a new random id unless ``job_id`` is given."""
    now = time.time()
    return OutgoingJob(
        id=job_id or uuid.uuid4().hex,
        type=type,
        queue=queue,
        priority=priority,
        run_at=now if run_at is None else run_at,
        created_at=now,
        dedupe_key=dedupe_key,
        body=body,
    )
