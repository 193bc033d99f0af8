"""The in-process result store (development, tests, single-process apps). Not durable. Expired
results are deleted at most once a minute, when a result is stored.

Queues on one :class:`~lssm_jobs.backends.memory.MemoryStore` share their results (the producer's queue sees
what the worker's queue stored), as they share jobs. Waiters are woken through an asyncio event on their own
event loop, so a waiter on another thread's loop (the blocking facade) wakes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from typing import Any

from lssm_jobs.results.base import ResultStore, StoredResult

#: Seconds between the prunes of expired results a store runs when results are stored.
PRUNE_INTERVAL = 60.0


class MemoryResultData:
    """Results by job id, and the events of callers waiting for one; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: dict[str, StoredResult] = {}
        self.waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self.last_prune = 0.0


#: One data object per memory backend store (weakly: it goes with the store), and per explicit namespace.
_by_store: weakref.WeakKeyDictionary[Any, MemoryResultData] = weakref.WeakKeyDictionary()
_by_namespace: dict[str, MemoryResultData] = {}
_registry_lock = threading.Lock()


class MemoryResultStore(ResultStore):
    """A :class:`ResultStore` in this process's memory."""

    name = "memory"

    def __init__(self, data: MemoryResultData | None = None) -> None:
        self.data = data if data is not None else MemoryResultData()

    async def put(self, result: StoredResult) -> None:
        if result.finished_at - self.data.last_prune >= PRUNE_INTERVAL:
            self.data.last_prune = result.finished_at
            await self.prune(now=result.finished_at)
        with self.data.lock:
            self.data.results[result.job_id] = result
            waiters = self.data.waiters.pop(result.job_id, [])
        for loop, event in waiters:
            # A waiter whose loop is closed (RuntimeError) waits no more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def get(self, job_id: str, *, now: float) -> StoredResult | None:
        with self.data.lock:
            found = self.data.results.get(job_id)
            return None if found is None or found.expires_at <= now else found

    async def delete(self, job_id: str) -> bool:
        with self.data.lock:
            return self.data.results.pop(job_id, None) is not None

    async def prune(self, *, now: float) -> int:
        with self.data.lock:
            expired = [job_id for job_id, found in self.data.results.items() if found.expires_at <= now]
            for job_id in expired:
                del self.data.results[job_id]
            return len(expired)

    async def wait(self, job_id: str, *, timeout: float) -> StoredResult | None:
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self.data.lock:
            found = self.data.results.get(job_id)
            if found is None:
                self.data.waiters.setdefault(job_id, []).append(entry)
        if found is None:
            try:
                await asyncio.wait_for(event.wait(), max(timeout, 0.0))
            except asyncio.TimeoutError:
                pass
            finally:
                with self.data.lock:
                    waiting = self.data.waiters.get(job_id)
                    if waiting is not None and entry in waiting:
                        waiting.remove(entry)
                        if not waiting:
                            del self.data.waiters[job_id]
        return await self.get(job_id, now=time.time())


def memory_result_store_factory(
    backend: Any = None, namespace: str | None = None, **options: Any
) -> MemoryResultStore:
    """ResultStoreSpec factory: the data of the memory queue backend's store (so every queue on that store
    sees the same results), of a process-wide ``namespace``, or new data.

    :raises TypeError: an unknown option.
    """
    if options:
        raise TypeError(f"the memory result store takes backend= and namespace= only, not {sorted(options)}")
    with _registry_lock:
        if namespace is not None:
            data = _by_namespace.setdefault(namespace, MemoryResultData())
        elif backend is not None and getattr(backend, "store", None) is not None:
            known = _by_store.get(backend.store)
            data = known if known is not None else _by_store.setdefault(backend.store, MemoryResultData())
        else:
            data = MemoryResultData()
    return MemoryResultStore(data)
