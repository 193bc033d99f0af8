"""A pipelined connection for the backend's hot path (script calls), set up by redis-py.

redis-py's asyncio client checks a connection out of its pool, wraps every command in retry and timeout
machinery and reads replies through ``StreamReader.readline``: about 100 µs of Python per command on a
small machine, more than Redis needs to run our scripts. A channel keeps one connection that redis-py
opened and authenticated (AUTH/ACL user, TLS, SELECT, Sentinel discovery all stay redis-py's), then takes
its transport over (``set_protocol``): each command is written at once without waiting for earlier
replies, and replies are parsed as bytes arrive (``data_received``) and matched to callers in order (Redis
answers in order on a connection). Concurrent callers thus share one socket with no lock, which is both
faster per call and naturally pipelined under load. Commands are encoded and replies parsed by
:mod:`.resp`; the connection is opened and handed over by :mod:`.internals`, the one module that touches
redis-py's private parts (when they differ, the backend does without a channel).

Only single-server clients (``Redis``, including Sentinel-managed ones) get channels; cluster clients use
redis-py for everything. The backend keeps a second channel for its blocking wait (``BLPOP``), so a
blocked wait never holds up the calls of the first.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError, TimeoutError

from lssm_jobs_redis.internals import AsyncConnector
from lssm_jobs_redis.resp import ReplyError, as_exception, pack_command, reply_reader


class _ReplyProtocol(asyncio.Protocol):
    """Takes over a connected transport from redis-py: replies are parsed as soon as bytes arrive, with no
    reader task in between."""

    def __init__(self, channel: RespChannel) -> None:
        self._channel = channel
        self._parser = reply_reader()
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

    :param connector: opens connections as the client's pool does (see :mod:`.internals`).
    :param reply_timeout: seconds the oldest outstanding call may wait for its reply before the connection
        counts as broken (every outstanding call then fails with ``TimeoutError``); None waits forever.
    """

    def __init__(self, connector: AsyncConnector, *, reply_timeout: float | None) -> None:
        self._connector = connector
        self._reply_timeout = reply_timeout
        self._connection: Any = None
        self._transport: asyncio.WriteTransport | None = None
        self._protocol: _ReplyProtocol | None = None
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False
        #: Commands sent over this channel so far (what tests and ``RedisBackend.transport`` report).
        self.sent = 0

    async def connect(self) -> None:
        """Connect now rather than on the first call (the backend does at start-up, to find out whether
        redis-py's internals are what the channel relies on).

        :raises InternalsChanged: they are not.
        """
        await self._connect()

    async def _connect(self) -> tuple[asyncio.WriteTransport, _ReplyProtocol]:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is not None and self._protocol is not None:
                return self._transport, self._protocol
            if self._closed:
                raise ConnectionError("the channel is closed")
            connection, transport = await self._connector.connect()
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
        self.sent += 1
        if self._reply_timeout is not None and self._watchdog is None:
            self._arm_watchdog()
        await protocol.drained()
        reply = await future
        if isinstance(reply, ReplyError):
            raise as_exception(reply)
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
