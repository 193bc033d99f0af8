"""The consumer loop of pull backends, the lease heartbeat, and settling with retries.

:class:`~lssm_jobs.backends.base.PullBackend` runs :func:`run_pull_consumer`; push and stream backends,
which own their loop, can run :func:`keep_leases_alive` over their own deliveries. This module knows a
backend and a delivery only by the few methods it calls (the protocols below), so the backend contract in
:mod:`lssm_jobs.backends.base` can use it without the two modules importing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from lssm_jobs.queue_selection import QueueSelection

# The logger of the worker as a whole (dispatcher and consumer alike): operators filter on this name.
log = logging.getLogger("lssm_jobs.worker")


class Lease(Protocol):
    """What the consumer uses of a :class:`~lssm_jobs.backends.base.Delivery`."""

    @property
    def id(self) -> str: ...

    @property
    def lease_ms(self) -> int | None: ...

    async def release(self) -> None: ...

    async def extend(self, lease_ms: int) -> bool: ...


class GuardedLease(Lease, Protocol):
    """What the heartbeat uses of a :class:`~lssm_jobs.backends.base.LeaseGuard`: its wrapped delivery,
    and marks around an extension made in a batch, so that a settle never overlaps it."""

    @property
    def delivery(self) -> Any: ...

    def begin_extend(self) -> bool: ...

    def end_extend(self) -> None: ...


L = TypeVar("L", bound=Lease)
L_co = TypeVar("L_co", bound=Lease, covariant=True)
G = TypeVar("G", bound=GuardedLease)


class Leasing(Protocol[L_co]):
    """What the consumer uses of a :class:`~lssm_jobs.backends.base.PullBackend`."""

    async def lease(
        self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float
    ) -> Sequence[L_co]: ...

    async def extend_many(self, deliveries: Sequence[Any], lease_ms: int) -> Sequence[bool]: ...


class BatchExtending(Protocol):
    """What the heartbeat uses of a :class:`~lssm_jobs.backends.base.QueueBackend`: one call that extends
    several leases (:meth:`~lssm_jobs.backends.base.QueueBackend.extend_many`)."""

    async def extend_many(self, deliveries: Sequence[Any], lease_ms: int) -> Sequence[bool]: ...


class ConsumeSettings(Protocol):
    """What the consumer reads of :class:`~lssm_jobs.backends.base.ConsumeOptions`."""

    @property
    def queues(self) -> Sequence[str] | None: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def lease_ms(self) -> int: ...

    @property
    def prefetch(self) -> int: ...

    @property
    def shutdown_timeout(self) -> float: ...

    @property
    def poll_interval(self) -> float: ...


#: Dispatch tasks cancelled because the worker stops (not by their handler): the dispatcher releases their
#: jobs. Python 3.10 has no ``Task.cancelling()`` to tell the two apart, so every stop path cancels through
#: :func:`cancel_for_stop`.
_stopped_tasks: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()


def cancel_for_stop(task: asyncio.Future[Any]) -> None:
    """Cancel a dispatch task because the worker stops: its job is released (ready again, the attempt not
    counted), never failed."""
    _stopped_tasks.add(task)
    task.cancel()


def cancelled_for_stop(task: asyncio.Future[Any]) -> bool:
    """Whether :func:`cancel_for_stop` cancelled ``task``."""
    return task in _stopped_tasks


def brief_error(error: BaseException) -> str:
    """A short description of a backend error for logs: a driver's message may quote job data (payloads can
    hold personal data or secrets), so only its first line, cut short, is logged."""
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first[:120]}{'...' if len(first) > 120 else ''}"


_SETTLE_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0)


async def settle(operation: Callable[[], Awaitable[None]], delivery: Lease, what: str) -> None:
    """Run a settle operation, retrying briefly on connection errors (a backend restarting). If it still
    fails, the job is not lost: its lease expires and it is delivered again (at-least-once)."""
    last: BaseException | None = None
    for delay in (0.0, *_SETTLE_DELAYS):
        if delay:
            await asyncio.sleep(delay)
        try:
            await operation()
            return
        except (ConnectionError, OSError, TimeoutError) as error:
            last = error
        except Exception as error:
            last = error
            break
    log.error(
        "could not %s job %s: %s; it will be delivered again after its lease expires",
        what,
        delivery.id,
        brief_error(last) if last else "unknown error",
    )


async def _wait_or_stop(stopping: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout)


async def keep_leases_alive(
    in_flight: Mapping[Any, Lease], lease_ms: int, backend: BatchExtending | None = None
) -> None:
    """Extend the leases of every running job every third of the lease, in one loop for all of them: with
    ``backend`` (and guarded deliveries, as the pull consumer has), in one ``extend_many`` call per beat.

    Runs until cancelled. Backends that own their consumption loop (push, stream) can run it over their own
    map of in-flight deliveries (wrapped in :class:`~lssm_jobs.backends.base.LeaseGuard`, so that a job
    settling meanwhile is not reported as a lost lease).
    """
    interval = max(lease_ms / 3000, 0.01)
    while True:
        await asyncio.sleep(interval)
        deliveries = [delivery for delivery in in_flight.values() if delivery.lease_ms]
        if not deliveries:
            continue
        results = await _extend_all(backend, deliveries, lease_ms)
        for delivery, result in zip(deliveries, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("could not extend the lease of job %s: %s", delivery.id, brief_error(result))
            elif result is False:
                log.warning(
                    "lost the lease of job %s (it ran longer than its lease without a heartbeat getting "
                    "through); another worker may run it too",
                    delivery.id,
                )


async def _extend_all(
    backend: BatchExtending | None, deliveries: list[Lease], lease_ms: int
) -> list[bool | BaseException]:
    """Extend each delivery's lease; per delivery, in order, the answer or the error. Guarded deliveries of
    a known backend are extended in one batch (a settling one answers True: nothing is left to keep)."""
    if backend is None or not all(hasattr(delivery, "begin_extend") for delivery in deliveries):
        return await asyncio.gather(
            *(delivery.extend(lease_ms) for delivery in deliveries), return_exceptions=True
        )
    guards: list[GuardedLease] = deliveries  # type: ignore[assignment]  # checked just above
    extending = [guard for guard in guards if guard.begin_extend()]
    try:
        answers = list(await backend.extend_many([guard.delivery for guard in extending], lease_ms))
    except Exception as error:  # the whole batch failed (the service is unreachable): try again next beat
        answers = [error] * len(extending)  # type: ignore[list-item]
    finally:
        for guard in extending:
            guard.end_extend()
    by_guard: dict[int, bool | BaseException] = {
        id(guard): answer for guard, answer in zip(extending, answers, strict=True)
    }
    return [by_guard.get(id(guard), True) for guard in guards]


async def _run_in_slot(
    dispatch: Callable[[G], Awaitable[None]],
    delivery: G,
    slots: asyncio.Semaphore,
    queued: set[asyncio.Future[None]],
    stopping: asyncio.Event,
) -> None:
    """Run a prefetched delivery once one of the ``concurrency`` slots is free; give it back unrun when
    the worker stops first. Cancelled while waiting (its task in ``queued``), it leaves the release to
    the consumer, which also releases deliveries whose task was cancelled before it ever ran."""
    try:
        await slots.acquire()
    finally:
        queued.discard(asyncio.current_task())  # type: ignore[arg-type,unused-ignore]
    try:
        if stopping.is_set():
            await settle(delivery.release, delivery, "release")
        else:
            await dispatch(delivery)
    finally:
        slots.release()


async def run_pull_consumer(
    backend: Leasing[L],
    dispatch: Callable[[G], Awaitable[None]],
    options: ConsumeSettings,
    stopping: asyncio.Event,
    *,
    guard: Callable[[L], G],
) -> None:
    """The consumption loop of every pull backend: lease as many jobs as there are free slots (plus
    ``prefetch``), run each (wrapped by ``guard``) in its own task, keep their leases alive, and on stop
    finish or release what is in flight.

    Memory stays bounded whatever the backlog: at most ``concurrency + prefetch`` jobs are leased by this
    worker at any time, and at most ``concurrency`` of them run; prefetched jobs wait for a slot (their
    leases kept alive) and are released unrun on stop.
    """
    in_flight: dict[asyncio.Future[None], G] = {}
    heartbeat = asyncio.create_task(keep_leases_alive(in_flight, options.lease_ms, backend))
    failures = 0
    queues = list(options.queues) if options.queues else None
    # Strict order or weights (lssm_jobs.queue_selection): consulted once per lease round.
    selection = options.queues if isinstance(options.queues, QueueSelection) else None
    capacity = options.concurrency + options.prefetch
    # Without prefetch every leased job has a slot: no semaphore on the hot path.
    slots = asyncio.Semaphore(options.concurrency) if options.prefetch else None
    queued: set[asyncio.Future[None]] = set()  # prefetched jobs waiting for a slot
    try:
        while not stopping.is_set():
            free = capacity - len(in_flight)
            if free <= 0:
                stop_waiter: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
                waiting: set[asyncio.Future[Any]] = {*in_flight, stop_waiter}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                stop_waiter.cancel()
                continue
            try:
                if selection is not None:
                    deliveries = await selection.lease(
                        backend, limit=free, lease_ms=options.lease_ms, wait=options.poll_interval
                    )
                else:
                    deliveries = await backend.lease(
                        queues=queues, limit=free, lease_ms=options.lease_ms, wait=options.poll_interval
                    )
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                delay = min(0.1 * 2 ** min(failures, 7), 10.0)
                log.error("leasing jobs failed (%s); retrying in %.1fs", brief_error(error), delay)
                await _wait_or_stop(stopping, delay)
                continue
            for leased in deliveries:
                delivery = guard(leased)
                if stopping.is_set():
                    await settle(delivery.release, delivery, "release")
                    continue
                if slots is None:
                    task: asyncio.Future[None] = asyncio.ensure_future(dispatch(delivery))
                else:
                    task = asyncio.ensure_future(_run_in_slot(dispatch, delivery, slots, queued, stopping))
                    queued.add(task)
                in_flight[task] = delivery
                task.add_done_callback(_forget(in_flight))
            if deliveries:
                # Let the new jobs start before the next lease request is built and sent: on an idle
                # worker that request would otherwise sit between a job's arrival and its handler.
                await asyncio.sleep(0)
    finally:
        # Prefetched jobs that never got a slot are released at once, not after the shutdown timeout.
        unstarted = [(task, in_flight[task]) for task in queued if task in in_flight]
        for task, _ in unstarted:
            cancel_for_stop(task)
        await asyncio.gather(*(task for task, _ in unstarted), return_exceptions=True)
        for _, unrun in unstarted:
            await settle(unrun.release, unrun, "release")
        if in_flight:
            _, pending = await asyncio.wait(set(in_flight), timeout=options.shutdown_timeout)
            for task in pending:
                log.warning(
                    "job %s did not finish within the shutdown timeout; releasing it", in_flight[task].id
                )
                cancel_for_stop(task)
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)


def _forget(in_flight: dict[asyncio.Future[None], G]) -> Callable[[asyncio.Future[None]], None]:
    def done(task: asyncio.Future[None]) -> None:
        in_flight.pop(task, None)

    return done
