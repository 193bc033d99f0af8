"""Coalescing of concurrent calls into one Redis round trip.

Many jobs finish in the same event-loop tick; settling each with its own round trip would make Redis
latency, not work, the limit. A :class:`Coalescer` runs the first call of a quiet period at once (no added
latency when idle) and, while that call is in flight, gathers every later call into the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Calls ``flush(items)`` (which returns one result per item, in order) for concurrent submissions.

    At most one flush is in flight at a time, so batches grow exactly as large as the load needs.

    :param inline: the first call of a quiet period flushes at once, in the caller's task (lowest latency
        for sequential callers); False defers every flush to a task started on the next loop iteration, so
        all calls made in the same iteration (jobs finishing together) share one flush.
    """

    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_batch: int, inline: bool = True
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._flush = flush
        self._max_batch = max_batch
        self._inline = inline
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Run ``item`` in the next flush and return its result.

        :raises Exception: whatever the flush raised, for every item of that flush.
        """
        if self._busy or not self._inline:
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._waiting.append((item, future))
            if not self._busy:
                self._busy = True
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
            return await future
        self._busy = True
        try:
            results = await self._flush((item,))
        finally:
            self._after_flush()
        return results[0]

    def _after_flush(self) -> None:
        if self._waiting:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    results = await self._flush([item for item, _ in batch])
                except BaseException as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        except asyncio.CancelledError:
            for _, future in self._waiting:
                if not future.done():
                    future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._busy = False
            self._drainer = None

    async def close(self) -> None:
        """Wait for the batches already submitted to finish."""
        drainer = self._drainer
        if drainer is not None:
            await asyncio.gather(drainer, return_exceptions=True)
