"""Every use of redis-py's private parts, in one place, each checked where it is first needed.

The fast transports (the pipelined channel of :mod:`.channel`, the synchronous pusher of :mod:`.blocking`)
let redis-py set up their connections (address, AUTH/ACL user, TLS, SELECT, Sentinel discovery) and then
take the socket over. That relies on things redis-py does not promise:

* a single-server client's pool has ``connection_class`` and ``connection_kwargs`` (how it makes its
  connections), and its asyncio connection classes have synchronous twins in ``redis.connection``;
* a connected asyncio connection keeps its ``asyncio.StreamWriter`` in ``_writer`` (whose transport the
  channel takes over), a connected synchronous one its socket in ``_sock``;
* the settings ``maint_notifications_config`` / ``maint_notifications_pool_handler`` (redis-py 7+) switch
  off server push messages, which would interleave with replies on a taken-over connection.

Each function here returns None (or raises :class:`InternalsChanged`) when what it relies on is not there;
the backend then uses plain redis-py calls for that path, logging once why (see
``RedisBackend.transport``). Tested with the lowest and the highest redis-py the plugin supports (``nox -s
redis_versions``), and with these internals hidden (the fallback).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import redis
import redis.connection as sync_connection
from redis.asyncio import connection as async_connection

from lssm_jobs_redis.connection import is_cluster

#: The attribute of a connected asyncio connection holding its ``StreamWriter``.
ASYNC_WRITER_ATTRIBUTE = "_writer"
#: The attribute of a connected synchronous connection holding its socket.
SYNC_SOCKET_ATTRIBUTE = "_sock"

# The synchronous twin of each async connection class a single-server client can use.
_SYNC_CLASSES: dict[type[Any], type[Any]] = {
    async_connection.Connection: sync_connection.Connection,
    async_connection.SSLConnection: sync_connection.SSLConnection,
    async_connection.UnixDomainSocketConnection: sync_connection.UnixDomainSocketConnection,
}
# Settings of the async pool that mean nothing to (or differ in type for) a synchronous connection; the
# pusher retries by itself.
_NOT_FOR_SYNC = ("retry", "retry_on_error", "retry_on_timeout", "redis_connect_func", "event_dispatcher")


class InternalsChanged(RuntimeError):
    """redis-py does not have (any more) what a fast transport relies on."""


def redis_py_version() -> str:
    return str(getattr(redis, "__version__", "unknown"))


def _pool_of(client: Any) -> Any:
    """The connection pool of a single-server client with the attributes we read, else None."""
    if is_cluster(client):
        return None
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "connection_class", None) is None:
        return None
    if not isinstance(getattr(pool, "connection_kwargs", None), dict):
        return None
    return pool


def _resp2_settings(pool: Any) -> dict[str, Any]:
    """The pool's connection settings for a taken-over connection: RESP2 (replies are plain arrays), and
    no server push messages (maintenance notifications need RESP3 and would interleave with replies)."""
    settings = dict(pool.connection_kwargs)
    settings["protocol"] = 2
    if "maint_notifications_config" in settings:
        settings["maint_notifications_config"] = None
    settings.pop("maint_notifications_pool_handler", None)
    return settings


class AsyncConnector:
    """Opens asyncio connections like a client's pool does and hands over their transports (for
    :class:`~lssm_jobs_redis.channel.RespChannel`). Make with :meth:`for_client`."""

    def __init__(self, pool: Any) -> None:
        self._connection_class: type[Any] = pool.connection_class
        self._settings = _resp2_settings(pool)

    @classmethod
    def for_client(cls, client: Any) -> AsyncConnector | None:
        """A connector for ``client``, or None when it is not a single-server client built the way this
        module knows (a cluster client, a custom pool)."""
        pool = _pool_of(client)
        return cls(pool) if pool is not None else None

    async def connect(self) -> tuple[Any, asyncio.Transport]:
        """A new connection, set up by redis-py (AUTH, TLS, SELECT, client name), and its transport, which
        the caller now owns (``set_protocol``) and closes.

        :raises InternalsChanged: the connection keeps its stream elsewhere (it is closed again).
        :raises redis.exceptions.ConnectionError: (and other redis-py errors) connecting failed.
        """
        connection = self._connection_class(**self._settings)
        await connection.connect()
        writer = getattr(connection, ASYNC_WRITER_ATTRIBUTE, None)
        transport = getattr(writer, "transport", None)
        if not isinstance(writer, asyncio.StreamWriter) or not isinstance(transport, asyncio.Transport):
            await connection.disconnect()
            raise InternalsChanged(
                f"redis-py {redis_py_version()}: a connected asyncio connection has no StreamWriter in "
                f"{ASYNC_WRITER_ATTRIBUTE!r}"
            )
        return connection, transport


class SyncConnector:
    """Opens synchronous connections with an asyncio client's settings and hands over their sockets (for
    :class:`~lssm_jobs_redis.blocking.BlockingPusher`). Make with :meth:`for_client`."""

    def __init__(self, connection_class: type[Any], settings: dict[str, Any]) -> None:
        self._connection_class = connection_class
        self._settings = settings

    @classmethod
    def for_client(cls, client: Any) -> SyncConnector | None:
        """A connector for ``client``'s server, or None when the client is not a plain single-server one
        (Sentinel-managed or a custom class: no synchronous twin we can trust)."""
        pool = _pool_of(client)
        if pool is None:
            return None
        sync_class = _SYNC_CLASSES.get(pool.connection_class)
        if sync_class is None:
            return None
        settings = {key: value for key, value in _resp2_settings(pool).items() if key not in _NOT_FOR_SYNC}
        settings.pop("maint_notifications_config", None)
        return cls(sync_class, settings)

    def connect(self) -> tuple[Any, socket.socket]:
        """A new connection, set up by redis-py, and its socket (the caller reads and writes it directly;
        ``connection.disconnect()`` closes it).

        :raises InternalsChanged: the connection keeps its socket elsewhere (it is closed again).
        """
        connection = self._connection_class(**self._settings)
        connection.connect()
        sock = getattr(connection, SYNC_SOCKET_ATTRIBUTE, None)
        if not isinstance(sock, socket.socket):
            connection.disconnect()
            raise InternalsChanged(
                f"redis-py {redis_py_version()}: a connected connection has no socket in "
                f"{SYNC_SOCKET_ATTRIBUTE!r}"
            )
        return connection, sock


def socket_timeout(client: Any) -> float | None:
    """The socket timeout the client's connections use (None: none or unknown)."""
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {}) if pool is not None else {}
    if not kwargs:
        manager = getattr(client, "nodes_manager", None)
        kwargs = getattr(manager, "connection_kwargs", {}) or {}
    value = kwargs.get("socket_timeout")
    return float(value) if value else None
