"""Opening sqlite database files the way every lssm-jobs component expects, and short write transactions.

Shared by the sqlite queue backend and anything else that keeps state in the same file (the scheduler's
sqlite store): WAL journal, a busy timeout so writers queue up instead of failing, explicit transactions.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Synchronous = Literal["normal", "full"]

#: ``UPDATE ... RETURNING`` arrived in sqlite 3.35.0.
HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
#: WAL pages (4 KiB each by default) after which a commit checkpoints the WAL into the database file.
WAL_AUTOCHECKPOINT = 10_000
#: Bytes the WAL file is truncated to after a checkpoint (it is reused, not grown, below that).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
#: ``INSERT ... ON CONFLICT DO NOTHING`` (upsert) arrived in sqlite 3.24.0; older versions are refused.
MIN_SQLITE_VERSION = (3, 24, 0)


def parse_sqlite_url(url: str) -> str:
    """``sqlite:///relative/jobs.db`` -> ``relative/jobs.db``; ``sqlite:////var/lib/jobs.db`` ->
    ``/var/lib/jobs.db`` (SQLAlchemy's convention).

    :raises ValueError: not a ``sqlite:///`` URL, or it carries a query string.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"expected a URL like sqlite:///jobs.db or sqlite:////abs/path/jobs.db, got {url!r}")
    path = url[len(prefix) :]
    if "?" in path or "#" in path:
        raise ValueError(f"sqlite URLs take no query string; pass options as keywords: {url!r}")
    return path


def database_file(
    path: str | os.PathLike[str] | None, url: str | None, *, owner: str, instead: str
) -> str:
    """The database file a component is given as ``path`` or as a ``sqlite:///`` ``url`` (exactly one).

    :param owner: the component, for messages (``"the sqlite backend"``).
    :param instead: what to say about an in-memory database (why a file is needed, what to use instead).
    :raises ValueError: neither or both given, a bad URL, or an in-memory database.
    """
    if (path is None) == (url is None):
        raise ValueError(f"{owner} needs exactly one of path= or url=")
    target = os.fspath(path) if path is not None else parse_sqlite_url(url or "")
    if target == ":memory:" or target.startswith("file::memory:") or not target:
        raise ValueError(f"{owner} needs a database file ({instead})")
    return target


def connect(
    path: str | os.PathLike[str],
    *,
    busy_timeout: float = 5.0,
    synchronous: Synchronous = "normal",
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """Open ``path`` (created if missing) in WAL mode, in autocommit mode (transactions are explicit: use
    :func:`immediate_transaction` to write), with foreign keys enforced. TEXT values that are not valid
    UTF-8 are read with ``surrogateescape`` (they do not encode back as UTF-8; nothing else changes).

    The connection belongs to the calling thread; use it from that thread only (``check_same_thread=False``
    lets another thread close it once its owner is done with it).

    :param busy_timeout: seconds a statement waits for another connection's write lock before failing with
        ``sqlite3.OperationalError: database is locked``.
    :param synchronous: ``"normal"`` survives process crashes (SIGKILL, OOM) with no fsync per commit; a power
        loss may drop the last commits. ``"full"`` also survives power loss, at one fsync per commit.
    :raises ConnectionError: the file cannot be opened (missing directory, permissions, not a database),
        or the sqlite library is older than 3.24.
    """
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        raise ConnectionError(
            f"lssm-jobs needs sqlite {'.'.join(map(str, MIN_SQLITE_VERSION))} or newer; "
            f"this Python has {sqlite3.sqlite_version}"
        )
    if synchronous not in ("normal", "full"):
        raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
    target = os.fspath(path)
    try:
        connection = sqlite3.connect(
            target, timeout=busy_timeout, isolation_level=None, check_same_thread=check_same_thread
        )
    except sqlite3.Error as error:
        raise ConnectionError(f"cannot open sqlite database {target!r}: {error}") from error
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = _switch_to_wal(connection, busy_timeout)
        if str(mode).lower() != "wal":
            raise ConnectionError(
                f"sqlite database {target!r} could not switch to WAL mode (it is in {mode!r})"
            )
        connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        connection.execute("PRAGMA foreign_keys = ON")
        # Checkpoint the WAL into the file every WAL_AUTOCHECKPOINT pages instead of sqlite's 1,000: a
        # bulk enqueue then pays for fewer checkpoints (each page rewritten by many commits is copied
        # once); the WAL file is cut back to JOURNAL_SIZE_LIMIT after a checkpoint.
        connection.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        connection.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        # TEXT that is not valid UTF-8 (written by other tools) is read as a string that does not encode,
        # instead of failing the whole query: the row's reader decides what to do with it.
        connection.text_factory = _decode_text
    except sqlite3.DatabaseError as error:
        connection.close()
        raise ConnectionError(f"cannot use sqlite database {target!r}: {error}") from error
    except BaseException:
        connection.close()
        raise
    return connection


#: sqlite's primary result code for "another connection holds the lock".
_SQLITE_BUSY = 5


def is_busy(error: sqlite3.OperationalError) -> bool:
    """Whether ``error`` says the database is locked by another connection (``SQLITE_BUSY``)."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return int(code) & 0xFF == _SQLITE_BUSY
    return "database is locked" in str(error)


def _switch_to_wal(connection: sqlite3.Connection, busy_timeout: float) -> object:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds a lock, up to ``busy_timeout``.

    When several processes open a new file at the same moment, sqlite answers this switch with
    ``SQLITE_BUSY`` at once instead of calling the busy handler (waiting could deadlock two connections
    that each hold a shared lock), so the busy timeout alone does not cover it."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if not is_busy(error) or time.monotonic() >= deadline:
                raise
        time.sleep(0.005)


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@contextmanager
def immediate_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: take the write lock up front (waiting up to the busy timeout), so
    a read-then-write sequence inside cannot be interleaved with another writer's, in any process. Rolls
    back on any exception. Keep the body short: every other writer waits for it."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # sqlite may already have rolled back (e.g. disk full)
            connection.execute("ROLLBACK")
        raise


@contextmanager
def read_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN`` ... ``COMMIT`` without writes: several reads see one consistent snapshot (WAL readers
    do not block writers, nor wait for them)."""
    connection.execute("BEGIN")
    try:
        yield connection
    finally:
        if connection.in_transaction:
            connection.execute("COMMIT")
