"""Clocks for the scheduler: the system clock, and a manual one that tests move by hand.

A scheduler reads the time only through its clock and sleeps only through :meth:`Clock.sleep_until`, so a
test can run days of schedule in milliseconds with :class:`ManualClock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from datetime import datetime


class Clock(ABC):
    """Where a scheduler gets the time, and how it waits for it."""

    @abstractmethod
    def now(self) -> float:
        """The current time, epoch seconds."""

    @abstractmethod
    async def sleep_until(self, deadline: float, wake: asyncio.Event) -> None:
        """Return once ``now() >= deadline`` or ``wake`` is set, whichever comes first (earlier is allowed)."""


class SystemClock(Clock):
    """The machine's clock (``time.time``)."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float, wake: asyncio.Event) -> None:
        timeout = deadline - time.time()
        if timeout <= 0 or wake.is_set():
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


class ManualClock(Clock):
    """A clock that only moves when told to: ``advance(seconds)`` or ``set(when)``.

    Every move wakes the sleepers at once. Use it from the event loop's thread.

    Example::

        clock = ManualClock(datetime(2026, 3, 28, 12, tzinfo=ZoneInfo("Europe/Berlin")))
        scheduler = JobScheduler(queue, clock=clock)
        clock.advance(3600)
    """

    def __init__(self, start: float | datetime = 1_800_000_000.0) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._sleepers: list[tuple[float, asyncio.Event]] = []

    def now(self) -> float:
        return self._now

    def set(self, when: float | datetime) -> None:
        """Jump to ``when`` (backwards too: a wall clock can be stepped back).

        Every sleeper wakes, not only those whose deadline passed, so a scheduler checks once after each
        move and a test can wait for that check (a ``scheduler.tick`` event stamped with the new time).
        """
        self._now = when.timestamp() if isinstance(when, datetime) else float(when)
        for _, reached in self._sleepers:
            reached.set()

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("advance() moves forward; use set() to step back")
        self.set(self._now + seconds)

    async def sleep_until(self, deadline: float, wake: asyncio.Event) -> None:
        if self._now >= deadline or wake.is_set():
            return
        reached = asyncio.Event()
        entry = (deadline, reached)
        self._sleepers.append(entry)
        waiters = {asyncio.ensure_future(reached.wait()), asyncio.ensure_future(wake.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            self._sleepers.remove(entry)
