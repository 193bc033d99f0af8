"""A result store in Redis (see :mod:`lssm_jobs.results`): results of jobs next to the jobs, in the queue
prefix's hash-tagged slot, so it works unchanged on Redis Cluster.

Keys, with ``prefix="jobs:"``::

    {jobs}:r:<id>    hash  one result: status, job type, value, error, reason, finished and expiry times
    {jobs}:rn:<id>   list  the result's notification: one element once the result is stored

Both keys expire with the result (``PEXPIREAT``), so Redis deletes expired results by itself. A put is one
``MULTI``/``EXEC`` transaction (both keys are in one slot). A waiter blocks on the notification list with
``BLMOVE rn rn``, a rotation of the list onto itself: it returns as soon as the list has an element and
leaves the element in place, so every waiter wakes, and any later one returns at once (Redis 6.2 or later).
"""

from __future__ import annotations

import asyncio
import builtins
import time
from typing import Any

from lssm_jobs.registrations import ResultStoreSpec
from lssm_jobs.results.base import ResultStore, StoredResult

from lssm_jobs_redis.backend import RedisBackend
from lssm_jobs_redis.connection import (
    TRANSIENT_ERRORS,
    RedisClient,
    is_cluster,
)
from lssm_jobs_redis.keys import KeyLayout
from lssm_jobs_redis.script_store import ScriptStore

#: Longest single blocking pop of a waiter (seconds), kept under the client's socket timeout (10 s).
LONGEST_BLOCK = 5.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(value: Any) -> str | None:
    return None if value is None or value == b"" else _text(value)


class RedisResultStore(ScriptStore, ResultStore):
    """Results in Redis.

    :param url: Redis URL (the store creates and closes its own client); any form the backend takes.
    :param redis: a client you own (never closed by the store).
    :param backend: a :class:`RedisBackend` whose Redis and prefix to share (its caller-owned client, or a
        client of the store's own to the same URL).
    :param prefix: key prefix (default: the backend's, else ``"jobs:"``).
    :param cluster: with ``url``, connect to a Redis Cluster.
    """

    name = "redis"

    def __init__(
        self,
        *,
        url: str | None = None,
        redis: RedisClient | None = None,
        backend: RedisBackend | None = None,
        prefix: str | None = None,
        cluster: bool = False,
    ) -> None:
        if sum(option is not None for option in (url, redis, backend)) > 1:
            raise ValueError("pass one of url=, redis= or backend=")
        connection: dict[str, Any] = {"url": url, "redis": redis, "cluster": cluster}
        if backend is not None:
            connection = ScriptStore.shared_with(backend)
            prefix = prefix if prefix is not None else backend.prefix
        elif url is None and redis is None:
            connection["url"] = "redis://127.0.0.1:6379/0"
        ScriptStore.__init__(self, **connection, what="the Redis result store", client_name="lssm-jobs-results")
        self.keys = KeyLayout.for_prefix(prefix if prefix is not None else "jobs:")

    @classmethod
    def create(cls, backend: Any = None, **options: Any) -> RedisResultStore:
        """The ResultStoreSpec factory: shares a Redis queue backend's Redis when given one."""
        if isinstance(backend, RedisBackend) and not {"url", "redis"} & set(options):
            return cls(backend=backend, **options)
        return cls(**options)

    def _result_key(self, job_id: str) -> str:
        return f"{self.keys.base}r:{job_id}"

    def _notify_key(self, job_id: str) -> str:
        return f"{self.keys.base}rn:{job_id}"

    @property
    def client(self) -> RedisClient:
        if self._client is None:
            raise RuntimeError("the Redis result store is not open")
        return self._client

    async def put(self, result: StoredResult) -> None:
        key, notify = self._result_key(result.job_id), self._notify_key(result.job_id)
        expires_ms = int(result.expires_at * 1000)
        try:
            # One MULTI on a single server. A cluster client gets a plain pipeline (redis-py before 6 refuses
            # transactions in cluster mode): the same commands in this order on the slot's connection, so a
            # waiter woken by the notification finds the result written before it; only a crash between
            # them can leave the hash without its expiry (its expires_at field still hides it when due).
            async with self.client.pipeline(transaction=not is_cluster(self.client)) as pipe:
                pipe.delete(key, notify)
                if result.expires_at > time.time():
                    pipe.hset(
                        key,
                        mapping={
                            "s": result.status,
                            "t": result.job_type,
                            "v": result.value if result.value is not None else b"",
                            "hv": "1" if result.value is not None else "0",
                            "e": result.error or "",
                            "r": result.reason or "",
                            "f": repr(result.finished_at),
                            "x": repr(result.expires_at),
                        },
                    )
                    pipe.pexpireat(key, expires_ms)
                    pipe.rpush(notify, b"1")
                    pipe.pexpireat(notify, expires_ms)
                await pipe.execute()
        except TRANSIENT_ERRORS as error:
            raise builtins.ConnectionError(f"Redis unreachable ({type(error).__name__}: {error})") from error

    async def get(self, job_id: str, *, now: float) -> StoredResult | None:
        try:
            row: dict[Any, Any] = await self.client.hgetall(self._result_key(job_id))
        except TRANSIENT_ERRORS as error:
            raise builtins.ConnectionError(f"Redis unreachable ({type(error).__name__}: {error})") from error
        if not row:
            return None
        expires_at = float(_text(row[b"x"]))
        if expires_at <= now:
            return None
        status = _text(row[b"s"])
        return StoredResult(
            job_id=job_id,
            job_type=_text(row[b"t"]),
            status="failed" if status == "failed" else "completed",
            value=row[b"v"] if row.get(b"hv") == b"1" else None,
            error=_optional(row.get(b"e")),
            reason=_optional(row.get(b"r")),
            finished_at=float(_text(row[b"f"])),
            expires_at=expires_at,
        )

    async def delete(self, job_id: str) -> bool:
        try:
            deleted: int = await self.client.delete(self._result_key(job_id))
            await self.client.delete(self._notify_key(job_id))
        except TRANSIENT_ERRORS as error:
            raise builtins.ConnectionError(f"Redis unreachable ({type(error).__name__}: {error})") from error
        return deleted > 0

    async def prune(self, *, now: float) -> int:
        return 0  # the keys expire by themselves (PEXPIREAT)

    async def wait(self, job_id: str, *, timeout: float) -> StoredResult | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        notify = self._notify_key(job_id)
        while True:
            found = await self.get(job_id, now=time.time())
            left = deadline - loop.time()
            if found is not None or left <= 0:
                return found
            block = min(left, LONGEST_BLOCK)
            try:
                # Rotating the list onto itself leaves its element for every other waiter.
                # (Redis 6 and later take fractional seconds; redis-py's annotation says int.)
                await self.client.blmove(
                    notify, notify, max(block, 0.01), src="RIGHT", dest="LEFT"  # type: ignore[arg-type]
                )
            except TRANSIENT_ERRORS as error:
                raise builtins.ConnectionError(
                    f"Redis unreachable ({type(error).__name__}: {error})"
                ) from error


def result_store_specs() -> list[ResultStoreSpec]:
    """The registration of this store (hook ``lssm_jobs_result_stores`` of the ``redis`` plugin)."""
    return [
        ResultStoreSpec(
            name="redis",
            factory=RedisResultStore.create,
            backend="redis",
            description="results next to the Redis queue's keys (expire by themselves; waiters block, no poll)",
            options_help={
                "url": "Redis URL, any form the redis backend takes (default: the Redis queue's own)",
                "prefix": "key prefix, also the Redis Cluster hash tag (default: the queue's, else 'jobs:')",
                "cluster": "with url: connect to a Redis Cluster",
            },
        )
    ]
