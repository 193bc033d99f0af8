"""A pipelined connection for the backend's hot path (script calls), set up by redis-py.

redis-py's asyncio client checks a connection out of its pool, wraps every command in retry and timeout
machinery and reads replies through ``StreamReader.readline``: about 100 µs of Python per command on a
small machine, more than Redis needs to run our scripts. A channel keeps one connection that redis-py
opened and authenticated (AUTH/ACL user, TLS, SELECT, Sentinel discovery all stay redis-py's), then takes
its transport over (``set_protocol``): each command is written at once without waiting for earlier
replies, and replies are parsed as bytes arrive (``data_received``) and matched to callers in order (Redis
answers in order on a connection). Concurrent callers thus share one socket with no lock, which is both
faster per call and naturally pipelined under load.

Only single-server clients (``Redis``, including Sentinel-managed ones) get channels; cluster clients use
redis-py for everything. The backend keeps a second channel for its blocking wait (``BLPOP``), so a
blocked wait never holds up the calls of the first.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

_hiredis: Any
try:  # hiredis parses replies in C when installed (the [hiredis] extra)
    _hiredis = importlib.import_module("hiredis")
except ImportError:  # pragma: no cover - depends on the environment
    _hiredis = None

_ERRORS: dict[str, type[Exception]] = {
    "NOSCRIPT": NoScriptError,
    "LOADING": BusyLoadingError,
    "READONLY": ReadOnlyError,
    "CLUSTERDOWN": ClusterDownError,
    "TRYAGAIN": TryAgainError,
    "MASTERDOWN": ConnectionError,
    "OOM": OutOfMemoryError,
}


class _ReplyError(Exception):
    """An error reply as parsed; turned into the matching redis-py exception by :func:`_as_exception`."""


def _as_exception(error: BaseException) -> Exception:
    text = str(error)
    code = text.split(" ", 1)[0]
    if code == "MOVED":
        return MovedError(text.split(" ", 1)[1])
    if code == "ASK":
        return AskError(text.split(" ", 1)[1])
    kind = _ERRORS.get(code)
    if kind is not None:
        return kind(text)
    return ResponseError(text)


def pack_command(args: Sequence[Any], count: int | None = None) -> bytes:
    """RESP encoding of one command: bytes as they are, str as UTF-8, int and float as text.

    :param count: the number of arguments in the whole command when more follow, already encoded.
    """
    parts = [b"*%d\r\n" % (len(args) if count is None else count)]
    append = parts.append
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode()
        elif kind is int:
            data = b"%d" % arg
        elif kind is float:
            data = repr(arg).encode()
        elif isinstance(arg, (bytes, bytearray, memoryview)):
            data = bytes(arg)
        elif isinstance(arg, str):
            data = str(arg).encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis: use bytes, str, int or float")
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


class RespParser:
    """Incremental RESP2 parser: ``feed(data)``, then ``gets()`` until it returns ``False``.

    Error replies come back as exception instances (not raised), like hiredis' ``Reader``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def gets(self) -> Any:
        try:
            value, position = self._parse(self._position)
        except IndexError:  # incomplete reply: wait for more data
            return False
        self._position = position
        if position == len(self._buffer):
            self._buffer.clear()
            self._position = 0
        elif position > 65_536:
            del self._buffer[:position]
            self._position = 0
        return value

    def _parse(self, position: int) -> tuple[Any, int]:
        buffer = self._buffer
        end = buffer.find(b"\r\n", position)
        if end < 0:
            raise IndexError
        kind = buffer[position]
        if kind == 36:  # $ bulk string
            length = int(buffer[position + 1 : end])
            if length < 0:
                return None, end + 2
            start = end + 2
            stop = start + length
            if len(buffer) < stop + 2:
                raise IndexError
            return bytes(buffer[start:stop]), stop + 2
        if kind == 42:  # * array
            count = int(buffer[position + 1 : end])
            if count < 0:
                return None, end + 2
            items = []
            position = end + 2
            parse = self._parse
            for _ in range(count):
                item, position = parse(position)
                items.append(item)
            return items, position
        if kind == 58:  # : integer
            return int(buffer[position + 1 : end]), end + 2
        if kind == 43:  # + simple string
            return bytes(buffer[position + 1 : end]), end + 2
        if kind == 45:  # - error
            return _ReplyError(buffer[position + 1 : end].decode(errors="replace")), end + 2
        raise ConnectionError(f"unexpected RESP type byte {chr(kind)!r} from Redis")


def _parser() -> Any:
    if _hiredis is not None:
        return _hiredis.Reader(replyError=_ReplyError)
    return RespParser()


class _ReplyProtocol(asyncio.Protocol):
    """Takes over a connected transport from redis-py: replies are parsed as soon as bytes arrive, with no
    reader task in between."""

    def __init__(self, channel: RespChannel) -> None:
        self._channel = channel
        self._parser = _parser()
        self._writable: asyncio.Event | None = None

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        deliver = self._channel._deliver
        while True:
            try:
                reply = parser.gets()
            except Exception as error:  # a protocol error: the stream can no longer be trusted
                self._channel._broken(ConnectionError(f"bad reply from Redis: {error}"))
                return
            if reply is False:
                return
            deliver(reply)

    def eof_received(self) -> bool:
        self._channel._broken(ConnectionError("Redis closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._channel._broken(ConnectionError(f"connection to Redis lost{f': {exc}' if exc else ''}"))

    def pause_writing(self) -> None:
        self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()
            self._writable = None

    async def drained(self) -> None:
        if self._writable is not None:
            await self._writable.wait()


class RespChannel:
    """Pipelined calls over one redis-py-established connection to a single Redis server.

    :param pool: the redis-py connection pool whose settings (address, credentials, TLS, db, Sentinel
        service) the channel's connection uses; RESP2 is forced since replies here are plain arrays.
    :param reply_timeout: seconds the oldest outstanding call may wait for its reply before the connection
        counts as broken (every outstanding call then fails with ``TimeoutError``); None waits forever.
    """

    def __init__(self, pool: Any, *, reply_timeout: float | None) -> None:
        self._pool = pool
        self._reply_timeout = reply_timeout
        self._connection: Any = None
        self._transport: asyncio.WriteTransport | None = None
        self._protocol: _ReplyProtocol | None = None
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False

    @staticmethod
    def supports(client: Any) -> bool:
        """Whether ``client`` is a single-server redis-py client whose connections a channel can use."""
        pool = getattr(client, "connection_pool", None)
        connection_class = getattr(pool, "connection_class", None)
        return pool is not None and connection_class is not None and hasattr(pool, "connection_kwargs")

    async def _connect(self) -> tuple[asyncio.WriteTransport, _ReplyProtocol]:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is not None and self._protocol is not None:
                return self._transport, self._protocol
            if self._closed:
                raise ConnectionError("the channel is closed")
            settings = dict(self._pool.connection_kwargs)
            settings["protocol"] = 2
            # Replies here are plain RESP2 arrays: no push messages (server maintenance notifications
            # need RESP3 and would interleave with replies), so those are off for this connection.
            if "maint_notifications_config" in settings:
                settings["maint_notifications_config"] = None
                settings.pop("maint_notifications_pool_handler", None)
            connection = self._pool.connection_class(**settings)
            await connection.connect()
            writer = getattr(connection, "_writer", None)
            transport = getattr(writer, "transport", None)
            if not isinstance(writer, asyncio.StreamWriter) or transport is None:
                await connection.disconnect()
                raise RuntimeError("this redis-py version keeps its streams elsewhere; channel unavailable")
            protocol = _ReplyProtocol(self)
            transport.set_protocol(protocol)
            self._connection = connection
            self._transport = transport
            self._protocol = protocol
            return transport, protocol

    async def call(self, *args: Any) -> Any:
        """Send one command and return its reply.

        :raises redis.exceptions.ConnectionError: the connection broke (the next call reconnects).
        :raises redis.exceptions.TimeoutError: no reply within ``reply_timeout``.
        :raises redis.exceptions.ResponseError: (and subclasses such as ``NoScriptError``) an error reply.
        """
        return await self._send(pack_command(args))

    async def _send(self, command: bytes) -> Any:
        transport = self._transport
        protocol = self._protocol
        if transport is None or protocol is None:
            transport, protocol = await self._connect()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((future, time.monotonic()))
        transport.write(command)
        if self._reply_timeout is not None and self._watchdog is None:
            self._arm_watchdog()
        await protocol.drained()
        reply = await future
        if isinstance(reply, _ReplyError):
            raise _as_exception(reply)
        return reply

    async def call_encoded(self, count: int, args: Sequence[Any], encoded: Sequence[bytes]) -> Any:
        """Like :meth:`call`, for a command of ``count`` arguments: ``args`` followed by arguments already
        encoded as RESP bulk strings (``encoded``, joined as they are)."""
        return await self._send(pack_command(args, count) + b"".join(encoded))

    async def send(self, command: bytes) -> Any:
        """Like :meth:`call`, for a command already RESP-encoded whole."""
        return await self._send(command)

    def _deliver(self, reply: Any) -> None:
        if not self._pending:
            self._broken(ConnectionError("Redis sent a reply nobody asked for"))
            return
        future, _ = self._pending.popleft()
        if not future.done():
            future.set_result(reply)

    def _arm_watchdog(self) -> None:
        assert self._reply_timeout is not None
        self._watchdog = asyncio.get_running_loop().call_later(
            max(self._reply_timeout / 4, 0.05), self._check_timeouts
        )

    def _check_timeouts(self) -> None:
        self._watchdog = None
        if not self._pending or self._reply_timeout is None:
            return
        _, sent = self._pending[0]
        if time.monotonic() - sent > self._reply_timeout:
            self._broken(TimeoutError(f"no reply from Redis within {self._reply_timeout}s"))
            return
        self._arm_watchdog()

    def _broken(self, error: Exception) -> None:
        """Fail every outstanding call and drop the connection; the next call opens a new one.

        The transport is closed here, not through redis-py's ``disconnect`` (which would wait for a stream
        protocol that no longer owns the transport).
        """
        self._connection = None
        transport, self._transport = self._transport, None
        self._protocol = None
        while self._pending:
            future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(error)
        if transport is not None and not transport.is_closing():
            transport.abort()

    def reset(self, error: Exception) -> None:
        """Drop the connection (failing outstanding calls with ``error``); the next call reconnects."""
        self._broken(error)

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._broken(ConnectionError("the channel was closed"))
