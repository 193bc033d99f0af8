"""Cross-process wake-ups for the sqlite backend: a doorbell of Unix datagram sockets per database file.

Every process that waits for jobs on a file binds one datagram socket in the file's doorbell directory
(``jobs.db-wake/`` beside ``jobs.db``), named ``<pid>-<random>.sock``, and a thread blocked in ``recv`` on
it (no CPU while idle). A process that commits something a worker may want (a push, a retry, a release, a
replay) rings every socket there but its own: one non-blocking ``sendto`` each, a few microseconds.

* A full socket buffer (``EAGAIN``) means rings are already waiting to be read: the ring is dropped, the
  worker wakes anyway.
* A socket nobody is bound to any more (its process was SIGKILLed) refuses the datagram
  (``ECONNREFUSED``): the ringer deletes it. A listener starting or stopping deletes such sockets too
  (:func:`sweep`), so the last one to stop leaves no directory behind. The random part of the name
  means a recycled pid never makes a ringer delete a live socket.
* The directory is beside the database because every process of the queue can write there already (WAL
  needs it for ``-wal`` and ``-shm``). When that path is too long for a socket address (about 80 bytes for the
  database path),
  the directory is ``lssm-jobs-wake-<hash of the file's real path>`` in the temporary directory instead;
  every process derives the same one.
* Where the doorbell cannot be set up (no ``AF_UNIX``, a read-only directory), :meth:`DoorbellListener.start`
  returns False and the backend falls back to polling ``PRAGMA data_version``.

The doorbell only wakes; correctness never depends on it: a woken worker leases through the database, and
workers also look at the database at least every ``poll_interval``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import threading
from collections.abc import Callable

log = logging.getLogger("lssm_jobs.backends.sqlite")

#: The doorbell directory of ``jobs.db`` is ``jobs.db-wake``.
DIRECTORY_SUFFIX = "-wake"
_SOCKET_SUFFIX = ".sock"
#: Room for ``/<pid>-<8 hex digits>.sock`` (a pid has at most 10 digits) below the socket address limit
#: (108 bytes on Linux, 104 on macOS, the final NUL included).
_NAME_ROOM = 25
_MAX_ADDRESS = 103
HAS_UNIX_SOCKETS = hasattr(socket, "AF_UNIX")


def doorbell_directory(database: str | os.PathLike[str]) -> str:
    """The doorbell directory of a database file; every process opening the file derives the same one."""
    real = os.path.realpath(os.fspath(database))
    beside = real + DIRECTORY_SUFFIX
    if len(os.fsencode(beside)) + _NAME_ROOM <= _MAX_ADDRESS:
        return beside
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"lssm-jobs-wake-{digest}")


def _own_prefix() -> str:
    return f"{os.getpid()}-"


def sweep(directory: str) -> int:
    """Delete the sockets in ``directory`` nobody is bound to any more (their processes died), without
    ringing the live ones: a datagram socket's ``connect`` to a dead one is refused. :returns: how many."""
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    deleted = 0
    own = _own_prefix()
    for name in names:
        if not name.endswith(_SOCKET_SUFFIX) or name.startswith(own):
            continue
        path = os.path.join(directory, name)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    deleted += 1
            except OSError:
                pass
    return deleted


class Doorbell:
    """Rings the sockets of the other processes waiting on one database file. Thread-safe."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._sender: socket.socket | None = None
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket | None:
        sender = self._sender
        if sender is None and HAS_UNIX_SOCKETS:
            with self._lock:
                if self._sender is None:
                    made = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    made.setblocking(False)
                    self._sender = made
                sender = self._sender
        return sender

    def ring(self) -> int:
        """Ring every other process's socket. :returns: how many took the ring (or had rings waiting)."""
        try:
            names = os.listdir(self.directory)
        except OSError:  # no directory: nobody waits on this file yet
            return 0
        sender = self._socket()
        if sender is None:
            return 0
        own = _own_prefix()
        rung = 0
        for name in names:
            if not name.endswith(_SOCKET_SUFFIX) or name.startswith(own):
                continue
            path = os.path.join(self.directory, name)
            try:
                sender.sendto(b"!", path)
                rung += 1
            except BlockingIOError:  # its buffer is full of rings it has not read yet: it will wake
                rung += 1
            except (ConnectionRefusedError, FileNotFoundError):
                # Nobody is bound to it any more: its process died without cleaning up.
                with contextlib.suppress(OSError):
                    os.unlink(path)
            except OSError as error:
                if error.errno not in (errno.EACCES, errno.EPERM, errno.ENOTSOCK, errno.EPROTOTYPE):
                    log.debug("could not ring %s: %s", path, error)
        return rung

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None


class DoorbellListener:
    """One process's socket in a doorbell directory, and the thread that calls ``on_ring`` when it rings
    (several rings that arrive together call it once)."""

    def __init__(self, directory: str, on_ring: Callable[[], None], *, mode: int | None = None) -> None:
        self.directory = directory
        self.on_ring = on_ring
        #: Permission bits of the database file: whoever may write to it may ring (the socket gets its
        #: read and write bits, the directory those plus search).
        self.mode = mode
        self.path: str | None = None
        self.pid = os.getpid()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def listening(self) -> bool:
        """Whether this process's socket is bound and its thread is running."""
        return self._thread is not None and self._thread.is_alive() and self.pid == os.getpid()

    def start(self) -> bool:
        """Bind the socket and start the thread. :returns: False when the doorbell cannot be used here
        (logged once, at INFO): waiting falls back to polling."""
        if not HAS_UNIX_SOCKETS:
            return False
        path = os.path.join(self.directory, f"{_own_prefix()}{secrets.token_hex(4)}{_SOCKET_SUFFIX}")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            for attempt in range(3):  # the last listener to leave removes the directory: make it again
                if not os.path.isdir(self.directory):
                    os.makedirs(self.directory, exist_ok=True)
                    if self.mode is not None:
                        with contextlib.suppress(OSError):  # someone else's directory: keep its mode
                            os.chmod(self.directory, self.mode | (self.mode & 0o444) >> 2)
                try:
                    listener.bind(path)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            if self.mode is not None:
                os.chmod(path, self.mode & 0o666)
        except OSError as error:
            listener.close()
            log.info(
                "no doorbell for %s (%s): waiting workers poll the database instead", self.directory, error
            )
            return False
        self.path, self._socket = path, listener
        sweep(self.directory)  # what killed processes left behind
        self._thread = threading.Thread(target=self._listen, name="lssm-jobs-doorbell", daemon=True)
        self._thread.start()
        return True

    def _listen(self) -> None:
        listener = self._socket
        assert listener is not None
        while True:
            try:
                listener.recv(16)
                while True:  # every ring already queued is answered by this one wake-up
                    listener.recv(16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
            except OSError:  # closed under us
                return
            if self._stopping:
                return
            try:
                self.on_ring()
            except Exception:  # a wake-up that fails must not end the listening
                log.exception("waking waiting workers failed")

    def stop(self) -> None:
        """Unbind: delete the socket file and end the thread. In a forked child (which inherited the
        listener but not its thread) it only closes the inherited socket."""
        listener, path, thread = self._socket, self.path, self._thread
        self._socket = self._thread = self.path = None
        if listener is None or path is None:
            return
        if self.pid == os.getpid():
            self._stopping = True
            # A datagram ends the blocking recv (closing a socket does not, on Linux); a full buffer
            # (EAGAIN) wakes it just the same.
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
                poke.setblocking(False)
                poke.sendto(b"", path)
            if thread is not None:
                thread.join(5)
            with contextlib.suppress(OSError):
                os.unlink(path)
            sweep(self.directory)
            with contextlib.suppress(OSError):  # not empty: other processes still listen
                os.rmdir(self.directory)
        listener.close()
