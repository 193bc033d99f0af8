"""Small pushes written on the calling event loop's thread, when sqlite will not make that thread wait.

``await queue.enqueue`` on the sqlite backend otherwise hands the write to the backend's database thread
and waits for its answer: two thread hand-offs (loop to thread, thread back to the loop), which on a small
machine cost more than the write itself (a one-job commit in WAL mode takes on the order of 100 µs). This
module writes such pushes on the loop's thread instead, but only while that cannot block the loop for
longer than the write:

* **the write lock is free now**: the connection's busy timeout is 0, so ``BEGIN IMMEDIATE`` fails at once
  when another connection holds the lock (another process, or this backend's own database thread in the
  middle of a lease); the push then goes to the database thread, which waits for the lock as before;
* **no fsync**: only at ``synchronous=NORMAL``, where a WAL commit is a ``write`` into the page cache;
  at ``"full"`` every commit waits for the disk, and pushes always go to the database thread;
* **no checkpoint**: ``wal_autocheckpoint`` is 0 on this connection, so its commits never copy the WAL into
  the database file (and fsync it). Every :data:`CHECKPOINT_EVERY` commits here, the database thread is
  asked for a passive checkpoint in the background, so a process that only produces keeps its WAL bounded;
* **a few jobs**: at most :data:`MAX_JOBS` per push; a bigger batch goes to the database thread.

The fallback is the plain path: whenever this one declines (:meth:`LoopPusher.push` returns ``None``),
nothing was written and the caller pushes on the database thread. A push that fails here for any other
reason is rolled back and its error raised, as the database thread would have raised it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence

from lssm_jobs.backends.base import OutgoingJob, PushResult
from lssm_jobs.backends.sqlite_connection import connect, is_busy

#: Pushes of more jobs than this go to the database thread (a long transaction would hold up the loop).
MAX_JOBS = 16
#: Commits on loop connections between two passive checkpoints requested from the database thread. A
#: one-job commit writes about five pages to the WAL, so this is about the ``wal_autocheckpoint`` the
#: other connections use.
CHECKPOINT_EVERY = 2_000

#: Stores ``jobs`` on a connection already inside a write transaction: the backend's insert logic.
StoreJobs = Callable[[sqlite3.Connection, Sequence[OutgoingJob]], list[PushResult]]


class LoopPusher:
    """Pushes on the calling thread over a connection that never waits (see the module docstring).

    :param path: the database file.
    :param store: writes the jobs inside the open transaction and returns their results.
    :param register: called with each new connection, so the backend closes it when it closes.
    :param checkpoint: called (on the calling thread) every :data:`CHECKPOINT_EVERY` commits; it should
        start a passive checkpoint elsewhere and return at once.
    """

    def __init__(
        self,
        path: str,
        *,
        store: StoreJobs,
        register: Callable[[sqlite3.Connection], None],
        checkpoint: Callable[[], None],
    ) -> None:
        self.path = path
        self._store = store
        self._register = register
        self._checkpoint = checkpoint
        self._local = threading.local()
        self._commits = 0

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        local = self._local
        connection: sqlite3.Connection | None = getattr(local, "connection", None)
        if connection is None or local.pid != pid:  # new thread, or a fork's child: never reuse across fork
            connection = connect(self.path, busy_timeout=0.0, synchronous="normal", check_same_thread=False)
            connection.execute("PRAGMA wal_autocheckpoint = 0")
            self._register(connection)
            local.connection, local.pid = connection, pid
        return connection

    def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult] | None:
        """Store ``jobs`` now, or return ``None`` (nothing written) when the write would have to wait.

        :raises sqlite3.Error: the write failed for another reason than a held lock (rolled back).
        """
        if len(jobs) > MAX_JOBS:
            return None
        try:
            db = self._connection()
        except ConnectionError:  # e.g. locked while switching to WAL: the database thread will tell
            return None
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if is_busy(error):
                return None
            raise
        try:
            results = self._store(db, jobs)
            db.execute("COMMIT")
        except BaseException as error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(error, sqlite3.OperationalError) and is_busy(error):
                return None
            raise
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            self._checkpoint()
        return results
