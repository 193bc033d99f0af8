"""Pushes from synchronous code: the Redis side of ``lssm_jobs.blocking``'s direct enqueue path.

A Flask or Django view enqueueing through :class:`~lssm_jobs.blocking.BlockingQueue` would otherwise hand
every call to the queue's private event loop thread and wait for it there (two thread switches per call).
:class:`BlockingPusher` sends the same push function call (``FCALL``/``EVALSHA``, the same arguments) over
a plain socket owned by the calling thread: one connection per thread, set up by redis-py's synchronous
connection class from the async client's settings (address, credentials, TLS, database), so AUTH, TLS and
SELECT are redis-py's. Sentinel and cluster clients are not covered (``for_backend`` returns None and the
blocking queue uses the event loop path).

After sending, the thread polls its socket for the reply for up to ``reply_spin_us`` before it sleeps in
the kernel. A local Redis answers a push within tens of microseconds, while waking a thread that sleeps
costs 20-50 µs on many virtual machines (measured on our 2-core benchmark machine: a PING round trip of
23 µs polling against 61-74 µs sleeping). Polling costs that much CPU per push, so it is skipped where it
cannot help: a process limited to one CPU (Redis, if local, needs it), TLS sockets, platforms without
``MSG_DONTWAIT``, and a Redis farther away than the polling time (after a reply polling missed, the next
64 pushes of that thread sleep at once).
"""

from __future__ import annotations

import builtins
import functools
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from lssm_jobs.backends.base import OutgoingJob, PushResult
from redis.exceptions import ConnectionError, OutOfMemoryError, ResponseError, TimeoutError

from lssm_jobs_redis.internals import SyncConnector
from lssm_jobs_redis.resp import ReplyError, ReplyReader, as_exception, pack_command, reply_reader


class _PusherOptions(Protocol):
    @property
    def reply_spin_us(self) -> int: ...

    @property
    def reconnect_timeout(self) -> float: ...


class PushTarget(Protocol):
    """What a pusher uses of :class:`lssm_jobs_redis.backend.RedisBackend` (its public push interface), as
    a protocol: that module imports this one, so this one does not import it back."""

    @property
    def client(self) -> Any: ...

    @property
    def options(self) -> _PusherOptions: ...

    @property
    def location(self) -> str: ...

    def push_command(self, jobs: Sequence[OutgoingJob]) -> bytes: ...

    def push_results(self, jobs: Sequence[OutgoingJob], reply: list[Any]) -> list[PushResult]: ...

    def lost_code(self, error: BaseException) -> bool: ...

    def reload_command(self) -> tuple[Any, ...]: ...

    def full(self, error: OutOfMemoryError, count: int) -> OutOfMemoryError: ...


_TRANSIENT = (ConnectionError, TimeoutError, builtins.ConnectionError, OSError)
_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)


def _poll(sock: socket.socket, spin: float) -> bytes | None:
    """Data from ``sock`` if some arrives within ``spin`` seconds (polled without sleeping), else None."""
    deadline = time.perf_counter() + spin
    if sock.gettimeout() is None:
        read = functools.partial(sock.recv, 65536, _DONTWAIT)
    else:
        # A socket with a timeout has a non-blocking descriptor, and its recv() would first sleep in poll()
        # until data comes (even with MSG_DONTWAIT): read the descriptor directly instead.
        read = functools.partial(os.read, sock.fileno(), 65536)
    while True:
        try:
            return read()
        except BlockingIOError:
            if time.perf_counter() >= deadline:
                return None


# After a reply that polling did not see come (Redis is farther than reply_spin_us), this many pushes sleep
# at once before polling is tried again: a remote Redis costs one wasted poll per this many pushes.
_UNPOLLED_AFTER_MISS = 64


class _ThreadConnection:
    """One thread's connection, its reply parser, and whether its pushes poll for replies."""

    __slots__ = ("connection", "reader", "sock", "spin", "unpolled")

    def __init__(self, connection: Any, sock: socket.socket, spin: float) -> None:
        self.connection = connection
        self.sock = sock
        self.reader: ReplyReader = reply_reader()
        self.spin = spin
        self.unpolled = 0


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class BlockingPusher:
    """``pusher(jobs)`` stores jobs like :meth:`RedisBackend.push`, from any thread, without an event loop.

    Safe to call from many threads at once: each thread gets its own connection on first use.
    """

    def __init__(self, backend: PushTarget, connector: SyncConnector) -> None:
        self._backend = backend
        self._connector = connector
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._closed = False
        spin_us = backend.options.reply_spin_us
        self._spin = spin_us / 1e6 if spin_us > 0 and _DONTWAIT and _usable_cpus() > 1 else 0.0
        #: Push calls sent so far, from every thread (what tests check the direct path by).
        self.sent = 0

    @classmethod
    def for_backend(cls, backend: PushTarget) -> BlockingPusher | None:
        """A pusher for ``backend``'s server, or None when its client is not a plain single-server one
        (see :class:`~lssm_jobs_redis.internals.SyncConnector`).

        The calling thread's connection is opened here, so a redis-py whose internals differ from what the
        pusher relies on is found at once: :class:`~lssm_jobs_redis.internals.InternalsChanged` is raised
        then (the backend falls back to the event loop path).
        """
        connector = SyncConnector.for_client(backend.client)
        if connector is None:
            return None
        pusher = cls(backend, connector)
        pusher.connect()
        return pusher

    def connect(self) -> None:
        """Open the calling thread's connection now rather than on its first push. A Redis unreachable at
        this moment is not an error here: the first push connects again, within its retry budget.

        :raises InternalsChanged: redis-py keeps its socket elsewhere (see :mod:`.internals`).
        """
        try:
            self._connection()
        except _TRANSIENT:
            self._drop()

    def __call__(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        """Store ``jobs`` in one push call (retried through outages for ``reconnect_timeout``; a repeated push
        stores nothing twice).

        :raises ConnectionError: Redis stayed unreachable.
        :raises redis.exceptions.ResponseError: Redis refused the call.
        """
        backend = self._backend
        budget = backend.options.reconnect_timeout
        deadline = time.monotonic() + budget
        delay = 0.05
        while True:
            try:
                reply = self._push_once(jobs)
            except OutOfMemoryError as error:
                raise backend.full(error, len(jobs)) from None
            except _TRANSIENT as error:
                self._drop()
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise builtins.ConnectionError(
                        f"Redis at {backend.location} unreachable for {budget:.0f}s during push: {error}"
                    ) from error
                time.sleep(min(delay * (0.5 + random.random()), remaining))
                delay = min(delay * 2, 2.0)
                continue
            return backend.push_results(jobs, reply)

    def _push_once(self, jobs: Sequence[OutgoingJob]) -> Any:
        backend = self._backend
        command = backend.push_command(jobs)
        try:
            return self._roundtrip(command)
        except ResponseError as error:
            if not backend.lost_code(error):
                raise
            self._roundtrip(pack_command(backend.reload_command()))  # the server lost our code: load it again
            return self._roundtrip(backend.push_command(jobs))

    def _roundtrip(self, command: bytes) -> Any:
        own = self._connection()
        sock, reader = own.sock, own.reader
        sock.sendall(command)
        self.sent += 1
        while True:
            reply = reader.gets()
            if reply is not False:
                break
            data = None
            if own.spin:
                if own.unpolled:
                    own.unpolled -= 1
                else:
                    data = _poll(sock, own.spin)
                    if data is None:  # a Redis this far away answers slower than polling can wait for
                        own.unpolled = _UNPOLLED_AFTER_MISS
            if data is None:
                data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"Redis at {self._backend.location} closed the connection")
            reader.feed(data)
        if isinstance(reply, ReplyError):
            raise as_exception(reply)
        return reply

    def _connection(self) -> _ThreadConnection:
        own: _ThreadConnection | None = getattr(self._local, "own", None)
        if own is not None:
            return own
        if self._closed:
            raise builtins.ConnectionError("the Redis backend was closed")
        connection, sock = self._connector.connect()
        spin = 0.0 if isinstance(sock, ssl.SSLSocket) else self._spin  # SSL sockets take no recv flags
        own = _ThreadConnection(connection, sock, spin)
        self._local.own = own
        with self._lock:
            self._connections.append(connection)
        return own

    def _drop(self) -> None:
        own: _ThreadConnection | None = getattr(self._local, "own", None)
        self._local.own = None
        if own is not None:
            with self._lock:
                if own.connection in self._connections:
                    self._connections.remove(own.connection)
            own.connection.disconnect()

    def close(self) -> None:
        """Close every thread's connection (threads that push afterwards get an error)."""
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.disconnect()
