"""An event sink that publishes every lifecycle event as JSON on a Redis pub/sub channel.

Attach it with ``open_queue(..., sinks=["logging", "redis"])`` (or ``LSSM_JOBS_SINKS=logging,redis``); it
then connects to ``LSSM_JOBS_EVENTS_URL`` (else ``LSSM_JOBS_URL``, else ``redis://127.0.0.1:6379/0``) and
publishes on ``LSSM_JOBS_EVENTS_CHANNEL`` (default ``lssm-jobs:events``). In code, pass ``url=`` or your
own client: ``RedisEventSink(redis=client, channel="app:jobs")``.

Each message is ``event.to_dict()`` as JSON: ``{"event": "job.completed", "timestamp": ..., "job_id": ...,
"job_type": ..., "queue": ..., "attempt": ..., "duration_ms": ...}``. Payloads are never part of events.

Publishing never slows jobs down: events are buffered and published in pipelined batches by a background
task. If Redis is unreachable the buffer keeps the newest ``max_buffer`` events and the dropped count is
logged once the connection is back. Pub/sub is fire-and-forget: subscribers that are not connected miss
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections import deque
from typing import Any

from lssm_jobs.events import Event, EventSink
from redis.exceptions import RedisError

from lssm_jobs_redis.connection import RedisClient, client_from_url, redact_url, torn_connection

log = logging.getLogger("lssm_jobs.redis")

DEFAULT_CHANNEL = "lssm-jobs:events"


class RedisEventSink(EventSink):
    """Publishes lifecycle events as JSON on ``channel``.

    :param url: Redis URL; the sink creates and closes its own client.
    :param redis: a client you own instead (never closed by the sink).
    :param channel: the pub/sub channel.
    :param max_buffer: most events held while Redis is unreachable (the oldest are dropped first).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        redis: RedisClient | None = None,
        channel: str = DEFAULT_CHANNEL,
        max_buffer: int = 10_000,
    ) -> None:
        if url is not None and redis is not None:
            raise ValueError("pass either url= or redis=, not both")
        if max_buffer < 1:
            raise ValueError("max_buffer must be >= 1")
        self.channel = channel
        self._url = url
        self._client = redis
        self._owns_client = redis is None
        self._buffer: deque[bytes] = deque(maxlen=max_buffer)
        self._dropped = 0
        self._flusher: asyncio.Task[None] | None = None
        self._failing = False
        self._closed = False

    @classmethod
    def from_options(cls, **options: Any) -> RedisEventSink:
        """The plugin factory; without options it reads the environment (see the module docstring)."""
        if "url" not in options and "redis" not in options:
            options["url"] = (
                os.environ.get("LSSM_JOBS_EVENTS_URL")
                or os.environ.get("LSSM_JOBS_URL")
                or "redis://127.0.0.1:6379/0"
            )
        options.setdefault("channel", os.environ.get("LSSM_JOBS_EVENTS_CHANNEL", DEFAULT_CHANNEL))
        return cls(**options)

    async def handle(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._buffer) == self._buffer.maxlen:
            self._dropped += 1
        self._buffer.append(json.dumps(event.to_dict(), default=str, separators=(",", ":")).encode())
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    def _connection(self) -> RedisClient:
        if self._client is None:
            assert self._url is not None
            self._client = client_from_url(self._url, client_name="lssm-jobs-events")
        return self._client

    async def _flush(self) -> None:
        delay = 0.1
        while self._buffer:
            batch = list(self._buffer)
            self._buffer.clear()
            try:
                pipe = self._connection().pipeline(transaction=False)
                for message in batch:
                    pipe.publish(self.channel, message)
                await pipe.execute()
            except (RedisError, AttributeError) as error:
                if isinstance(error, AttributeError) and not torn_connection(error):
                    raise
                newer = list(self._buffer)
                self._buffer.clear()
                self._buffer.extend(batch)
                self._buffer.extend(newer)  # beyond max_buffer the oldest fall out
                self._dropped += len(batch) + len(newer) - len(self._buffer)
                if not self._failing:
                    self._failing = True
                    where = redact_url(self._url) if self._url else "the given client"
                    log.warning(
                        "cannot publish events to Redis at %s (%s); buffering", where, type(error).__name__
                    )
                if self._closed:
                    return
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            if self._failing or self._dropped:
                log.warning(
                    "publishing events to Redis again (%d events were dropped meanwhile)", self._dropped
                )
                self._failing = False
                self._dropped = 0

    async def close(self) -> None:
        """Publish what is buffered (waiting at most 5 s), then close the client if the sink created it."""
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(flusher), 5.0)
        self._closed = True
        if flusher is not None and not flusher.done():
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
