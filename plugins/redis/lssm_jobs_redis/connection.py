"""Redis clients from URLs (single server, TLS, ACL users, Sentinel, Cluster) and credential-free logging.

URL forms (``rediss`` instead of ``redis`` enables TLS in each):

* ``redis://[[user]:password@]host[:port][/db]`` and ``unix:///path/to/redis.sock?db=0``: one server,
  parsed by redis-py itself, so every query option redis-py knows works (``?socket_timeout=5``,
  ``&ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem``, ...);
* ``redis+cluster://[[user]:password@]host:port[,host:port...]``: a Redis Cluster, from any of its nodes
  (``cluster=True`` with a ``redis://`` URL does the same from one node);
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``: the primary that the
  Sentinels name for ``service_name``, followed across failovers (redis-py's own URL parser has no
  Sentinel form; this one is ours). ``?sentinel_username=...&sentinel_password=...`` authenticate to the
  Sentinels when they need it; user and password in the URL authenticate to the Redis servers.
"""

from __future__ import annotations

import builtins
import os
import re
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    ReadOnlyError,
    TimeoutError,
    TryAgainError,
)

RedisClient: TypeAlias = "Redis | RedisCluster"

#: Errors after which an operation is worth repeating once Redis is reachable again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    builtins.ConnectionError,
    builtins.TimeoutError,
)

_SECRET_QUERY = re.compile(r"(?i)([?&][^=&]*(?:password|secret|token)[^=&]*=)[^&]*")

# Query options of our own URL forms that are passed to the connections, with their types.
_TLS_OPTIONS: dict[str, type[Any]] = {
    "ssl_ca_certs": str,
    "ssl_ca_path": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": bool,
    "ssl_min_version": str,
}
_NUMBER_OPTIONS: dict[str, type[Any]] = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "health_check_interval": float,
    "max_connections": int,
}


def redact_url(url: str) -> str:
    """``url`` with any password (user info or query option) replaced by ``***``, fit for logs and output.

    The user info ends at the **last** ``@`` of the URL, as the clients parse it (``urllib`` splits the
    host part at its last ``@``): a password may hold unencoded ``@`` (or ``/``, ``?``, ``#``, which break
    parsing, and the URL then appears in an error message). Everything between the user name and that
    ``@`` is hidden, and so is the value of every query option named like a password, secret or token;
    when such parts overlap (an ``@`` in a query value), their union is hidden: more than the password,
    never less.
    """
    hidden = [False] * len(url)
    start = url.find("://") + 3
    at = url.rfind("@")
    if start >= 3 and at >= start:
        colon = url.find(":", start, at)
        for index in range(colon + 1 if colon >= 0 else start, at):
            hidden[index] = True
    for match in _SECRET_QUERY.finditer(url):
        for index in range(match.end(1), match.end()):
            hidden[index] = True
    parts: list[str] = []
    index = 0
    while index < len(url):
        if hidden[index]:
            while index < len(url) and hidden[index]:
                index += 1
            parts.append("***")
        else:
            parts.append(url[index])
            index += 1
    return "".join(parts)


def default_retry(attempts: int = 3) -> Retry:
    """redis-py's own retry for a command that hit a dropped connection: a few quick tries with backoff.

    The backend adds its own, longer patience on top (``reconnect_timeout``) for restarts and failovers.
    """
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), attempts)


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _split_nodes(
    netloc: str, default_port: int, url: str
) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    user: str | None = None
    password: str | None = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        name, colon, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [IPv6]:port
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            nodes.append((host, int(port) if port else default_port))
        except ValueError:
            raise ValueError(f"bad host:port {part!r} in Redis URL {redact_url(url)}") from None
    if not nodes:
        raise ValueError(f"no host in Redis URL {redact_url(url)}")
    return user, password, nodes


def _query_options(query: str, url: str, extra: dict[str, type[Any]]) -> dict[str, Any]:
    known = {**_TLS_OPTIONS, **_NUMBER_OPTIONS, **extra}
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        kind = known.get(name)
        if kind is None:
            raise ValueError(
                f"unknown option {name!r} in Redis URL {redact_url(url)}; known: {sorted(known)}"
            )
        try:
            options[name] = _bool(value) if kind is bool else kind(unquote(value))
        except ValueError as error:
            raise ValueError(f"option {name!r} in Redis URL {redact_url(url)}: {error}") from None
    return options


def client_from_url(
    url: str,
    *,
    cluster: bool = False,
    socket_timeout: float | None = 10.0,
    socket_connect_timeout: float | None = 5.0,
    health_check_interval: float = 15.0,
    max_connections: int | None = None,
    client_name: str | None = "lssm-jobs",
    retry_attempts: int = 3,
) -> RedisClient:
    """A redis-py asyncio client for ``url`` (see the module docstring for the URL forms).

    The client returns bytes (``decode_responses=False``), keeps TCP keepalive on, checks idle connections
    every ``health_check_interval`` seconds, and retries a command that hit a dropped connection
    ``retry_attempts`` times with exponential backoff and jitter.

    :raises ValueError: the URL is malformed or names an unknown option (the message never shows secrets).
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    common: dict[str, Any] = {
        "decode_responses": False,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": health_check_interval,
        "retry": default_retry(retry_attempts),
        "retry_on_error": [ConnectionError, TimeoutError, BusyLoadingError],
        "client_name": client_name,
    }
    if scheme in ("redis", "rediss", "unix"):
        if cluster:
            if scheme == "unix":
                raise ValueError("a Redis Cluster is reached over TCP, not a unix socket")
            common.pop("health_check_interval")
            if max_connections is not None:
                common["max_connections"] = max_connections
            return RedisCluster.from_url(url, **common)
        if max_connections is not None:
            common["max_connections"] = max_connections
        client: Redis = Redis.from_url(url, **common)
        return client
    parts = urlsplit(url)
    tls = scheme.startswith("rediss+")
    if scheme in ("redis+cluster", "rediss+cluster"):
        user, password, nodes = _split_nodes(parts.netloc, 6379, url)
        options = _query_options(parts.query, url, {})
        common.pop("health_check_interval")
        common.update(options)
        if max_connections is not None:
            common.setdefault("max_connections", max_connections)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=user,
            password=password,
            ssl=tls,
            **common,
        )
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        user, password, nodes = _split_nodes(parts.netloc, 26379, url)
        path = [unquote(part) for part in parts.path.split("/") if part]
        if not path or len(path) > 2:
            raise ValueError(
                f"a Sentinel URL needs the service name as its path (…/mymaster[/db]): {redact_url(url)}"
            )
        service = path[0]
        db = int(path[1]) if len(path) == 2 else 0
        options = _query_options(
            parts.query, url, {"sentinel_username": str, "sentinel_password": str, "db": int}
        )
        db = options.pop("db", db)
        sentinel_auth = {
            "username": options.pop("sentinel_username", None),
            "password": options.pop("sentinel_password", None),
        }
        common.update(options)
        if max_connections is not None:
            common.setdefault("max_connections", max_connections)
        sentinel_kwargs: dict[str, Any] = {
            key: value for key, value in common.items() if key.startswith("socket_") or key.startswith("ssl_")
        }
        sentinel_kwargs.update({key: value for key, value in sentinel_auth.items() if value is not None})
        if tls:
            sentinel_kwargs["ssl"] = True
        sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        master: Redis = sentinel.master_for(
            service, username=user, password=password, db=db, ssl=tls, **common
        )
        return master
    raise ValueError(
        f"unsupported Redis URL {redact_url(url)}: use redis://, rediss://, unix://, redis+cluster://, "
        "rediss+cluster://, redis+sentinel:// or rediss+sentinel://"
    )


_REDIS_PACKAGE = os.path.dirname(os.path.abspath(redis.__file__)) + os.sep


def torn_connection(error: BaseException) -> bool:
    """Whether ``error`` is redis-py's own ``AttributeError`` for a connection torn down under a command.

    While a Redis Cluster node restarts, redis-py's cluster client disconnects a node's connections as it
    refreshes its view of the cluster; a command then connecting or writing on one of them finds its socket
    gone (``'NoneType' object has no attribute 'writelines'``, raised inside redis-py) instead of a
    ``ConnectionError``. It is a connection failure like any other: the command did not complete and is
    worth repeating once the node is back. Only an ``AttributeError`` raised by redis-py's own code counts,
    never one from ours.
    """
    if not isinstance(error, AttributeError):
        return False
    frame = error.__traceback__
    if frame is None:
        return False
    while frame.tb_next is not None:
        frame = frame.tb_next
    return os.path.abspath(frame.tb_frame.f_code.co_filename).startswith(_REDIS_PACKAGE)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def returns_text(client: Any) -> bool:
    """Whether ``client`` was made with ``decode_responses=True`` (the backend needs bytes)."""
    if isinstance(client, RedisCluster):
        kwargs: dict[str, Any] = getattr(client.nodes_manager, "connection_kwargs", {})
        return bool(kwargs.get("decode_responses", False))
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) if pool is not None else {}
    return bool(kwargs.get("decode_responses", False))
