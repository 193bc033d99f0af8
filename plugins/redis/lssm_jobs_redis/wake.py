"""Wake-ups for idle consumers: one pub/sub subscription per backend instead of polling.

A consumer whose lease came back empty flags its queues idle (in the same script call) and waits here.
A producer that makes a job ready on an idle queue publishes the queue's name and clears the flag, so
busy systems publish nothing. No wake-up is lost: a waiter is registered before the lease call, so a
message arriving while the call is in flight still wakes it; and after every (re)subscription all waiters
look again, covering messages missed while the connection was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

from redis.asyncio import ConnectionPool, Redis

log = logging.getLogger("lssm_jobs.redis")


class Waiter:
    """One pending wait: resolved by a wake-up for one of its queues (None: any), or by an interrupt."""

    __slots__ = ("future", "queues", "stop_only")

    def __init__(
        self, future: asyncio.Future[None], queues: frozenset[bytes] | None, stop_only: bool
    ) -> None:
        self.future = future
        self.queues = queues
        self.stop_only = stop_only


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class WakeListener:
    """Subscribes to the prefix's wake channel and resolves the waiters of the queues named there."""

    def __init__(self, client: Any, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Event | None = None
        self._waiters: set[Waiter] = set()
        self.subscribed = False

    async def start(self) -> None:
        """Subscribe on first use; waits (briefly) for the first subscription attempt to finish."""
        if self._task is None:
            self._first_attempt = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lssm-jobs redis wake-ups")
        if self._first_attempt is not None and not self._first_attempt.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._first_attempt.wait(), 2.0)

    def waiter(self, queues: Sequence[str] | None, *, stop_only: bool = False) -> Waiter:
        names = frozenset(name.encode() for name in queues) if queues else None
        waiter = Waiter(asyncio.get_running_loop().create_future(), names, stop_only)
        self._waiters.add(waiter)
        return waiter

    def discard(self, waiter: Waiter) -> None:
        self._waiters.discard(waiter)

    async def wait(self, waiter: Waiter, timeout: float) -> None:
        """Wait until ``waiter`` is woken or ``timeout`` seconds pass; it is discarded either way."""
        try:
            if not waiter.future.done():
                if timeout <= 0:
                    return
                timer = asyncio.get_running_loop().call_later(timeout, _resolve, waiter.future)
                try:
                    await waiter.future
                finally:
                    timer.cancel()
        finally:
            self._waiters.discard(waiter)

    def interrupt(self) -> None:
        """Wake every waiter (the worker is stopping)."""
        for waiter in list(self._waiters):
            _resolve(waiter.future)

    def _notify(self, queue: bytes | None) -> None:
        for waiter in list(self._waiters):
            if waiter.stop_only:
                continue
            if queue is None or waiter.queues is None or queue in waiter.queues:
                _resolve(waiter.future)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub: Any = None
            node_client: Any = None
            try:
                pubsub, node_client = self._open_pubsub()
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "message":
                        self._notify(message["data"])
                    elif kind == "subscribe":
                        # (re)subscribed: wake-ups may have been missed meanwhile, so everyone looks again
                        if not self.subscribed:
                            self.subscribed = True
                            delay = 0.1
                        self._notify(None)
                        if self._first_attempt is not None:
                            self._first_attempt.set()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.subscribed:
                    log.warning(
                        "lost the Redis wake-up subscription (%s); re-subscribing", type(error).__name__
                    )
                self.subscribed = False
                if self._first_attempt is not None:
                    self._first_attempt.set()
                self._notify(None)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                if node_client is not None:
                    with contextlib.suppress(Exception):
                        await node_client.aclose()

    def _open_pubsub(self) -> tuple[Any, Any]:
        """A pub/sub object for the wake channel, and the client made for it (to close), if any."""
        if hasattr(self._client, "pubsub"):
            return self._client.pubsub(), None
        # redis-py before 6 has no asyncio cluster pub/sub: listen on the node serving the channel's slot
        # (a cluster delivers PUBLISH to every node, so any node would do).
        node = self._client.get_node_from_key(self._channel)
        pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
        node_client = Redis(connection_pool=pool)
        return node_client.pubsub(), node_client

    async def close(self) -> None:
        self.interrupt()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
