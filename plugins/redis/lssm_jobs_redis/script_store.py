"""The base of the plugin's small Redis stores (job ledger, scheduler store, result store): one client, its
own or the caller's (or a queue backend's), checked when opened, and scripts whose transient failures read
as ``ConnectionError``."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from lssm_jobs_redis.connection import (
    TRANSIENT_ERRORS,
    RedisClient,
    client_from_url,
    redact_url,
    returns_text,
)
from lssm_jobs_redis.scripts import LuaScript, evalsha

if TYPE_CHECKING:
    from lssm_jobs_redis.backend import RedisBackend


class ScriptStore:
    """A Redis client for a store: made from ``url`` (and closed by the store) or given (``redis``, never
    closed by it).

    :param what: the store's name in messages, e.g. ``"the Redis ledger"``.
    :param client_name: the name the store's own connections give Redis (``CLIENT LIST`` shows it).
    :param cluster: with ``url``, connect to a Redis Cluster.
    """

    def __init__(
        self, *, url: str | None, redis: RedisClient | None, what: str, client_name: str, cluster: bool = False
    ) -> None:
        self._url = url
        self._client = redis
        self._owns_client = redis is None
        self._what = what
        self._client_name = client_name
        self._cluster = cluster

    @staticmethod
    def shared_with(backend: RedisBackend) -> dict[str, Any]:
        """The ``url``, ``redis`` and ``cluster`` of a store that shares ``backend``'s Redis: its URL (a
        client of the store's own), or the caller-owned client it runs on (never closed by the store)."""
        if backend.url is None:
            return {"url": None, "redis": backend.client, "cluster": False}
        return {"url": backend.url, "redis": None, "cluster": backend.cluster}

    async def open(self) -> None:
        """Connect (own client) and check Redis answers.

        :raises ValueError: the given client decodes responses (the stores read bytes).
        :raises ConnectionError: Redis does not answer (the message names the URL without credentials).
        """
        if self._client is None:
            assert self._url is not None
            self._client = client_from_url(self._url, cluster=self._cluster, client_name=self._client_name)
        if returns_text(self._client):
            raise ValueError("the Redis client must return bytes: create it with decode_responses=False")
        try:
            await self._client.ping()
        except RedisError as error:
            where = redact_url(self._url) if self._url else "the given client"
            raise builtins.ConnectionError(f"cannot reach Redis at {where}: {error}") from error

    async def close(self) -> None:
        """Close the store's own client (a given client stays open)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    async def _run_script(self, script: LuaScript, key: str, arguments: list[Any]) -> Any:
        """Run ``script`` with ``key`` (its cluster slot) and ``arguments``.

        :raises RuntimeError: the store is not open.
        :raises ConnectionError: Redis is unreachable (a transient error: worth trying again later).
        """
        if self._client is None:
            raise RuntimeError(f"{self._what} is not open")
        try:
            return await evalsha(self._client, script, key, arguments)
        except TRANSIENT_ERRORS as error:
            raise builtins.ConnectionError(f"Redis unreachable ({type(error).__name__}: {error})") from error
