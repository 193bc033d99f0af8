"""The sqlite backend: a durable queue in one file, shared by every process on the machine that opens it.

* Storage: the tables of :mod:`lssm_jobs.entities` (created or upgraded on open), WAL journal.
* Concurrency: each backend instance does its sqlite work on one dedicated thread with its own
  connection, not on the event loop; the exception is a push of a few jobs, written on the loop's thread
  when the write lock is free (:mod:`lssm_jobs.backends.sqlite_loop_push`). Every write is a short
  ``BEGIN IMMEDIATE`` transaction, so producers and workers in several processes serialize on sqlite's
  write lock: a job is leased by one worker at a time, and a settle carrying a stale lease token (the
  lease expired and someone else took the job) changes nothing.
* Waiting: ``lease(wait=...)`` sleeps until a push in this process (through any backend instance on the
  file) or another process's ring of the file's doorbell (:mod:`lssm_jobs.backends.sqlite_doorbell`)
  wakes it, the next scheduled job or lease expiry is due, or ``wait`` ends (the worker's
  ``poll_interval``). Without a doorbell it asks ``PRAGMA data_version`` every ``FALLBACK_POLL`` seconds.
* Settling: acks, retries, dead-letters and releases that arrive while the database thread is busy are
  committed together, in one transaction (a group commit).
* Retention: completed jobs stay readable for ``completed_retention`` seconds, then are pruned in small
  batches by the workers.

Open it with ``open_queue("sqlite", path="jobs.db")`` (or ``url="sqlite:///jobs.db"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, TypeVar, cast

import attrs

from lssm_jobs.backends.base import (
    BackendCapabilities,
    CancelOutcome,
    DeadLetter,
    Delivery,
    JobRecord,
    OutgoingJob,
    PullBackend,
    PushResult,
    WorkerInfo,
    WorkerRegistry,
    new_push_result,
)
from lssm_jobs.backends.sqlite_connection import (
    HAS_RETURNING,
    Synchronous,
    connect,
    database_file,
    immediate_transaction,
    read_transaction,
)
from lssm_jobs.backends.sqlite_doorbell import Doorbell, DoorbellListener, doorbell_directory
from lssm_jobs.backends.sqlite_loop_push import LoopPusher
from lssm_jobs.backends.sqlite_records import (
    Kind,
    blob_id_matches,
    blob_of,
    clean_id,
    describe,
    id_of,
    id_param,
    int_of,
    optional_text_of,
    problems,
    real_of,
    text_of,
)
from lssm_jobs.backends.sqlite_schema import ensure_schema
from lssm_jobs.errors import DedupeConflictError, QueueClosedError, SerializationError
from lssm_jobs.jobs import JobStatus

log = logging.getLogger("lssm_jobs.backends.sqlite")

T = TypeVar("T")

_JOB_COLUMNS = (
    "id, type, queue, status, attempts, priority, run_at, created_at, updated_at, "
    "dedupe_key, last_error, body"
)
_DEAD_COLUMNS = (
    "id, type, queue, priority, run_at, created_at, dedupe_key, attempts, reason, error, "
    "traceback, failed_at, body"
)
_LIVE = "('scheduled', 'pending', 'active')"
_STATUSES = ("scheduled", "pending", "active", "completed", "cancelled")
#: What a lease returns of each row, and the type each must have for the row to be run.
_LEASED_COLUMNS = "id, queue, attempts, priority, run_at, created_at, body"
_LEASED_KINDS: tuple[tuple[str, Kind], ...] = (
    ("id", "text"),
    ("queue", "text"),
    ("attempts", "int"),
    ("priority", "int"),
    ("run_at", "real"),
    ("created_at", "real"),
    ("body", "blob"),
)
# Rows no lease would ever pick, each condition an index range (in sqlite's order of values, NULL <
# numbers < TEXT < BLOB, so ``>= 9e999`` is "infinite, TEXT or BLOB" and ``>= x''`` is "BLOB"): a status
# other than the five known ones, a scheduled job whose run_at is not a finite number, a BLOB queue or id.
_UNREADABLE = (
    "SELECT rowid FROM lssm_jobs WHERE status < 'active' OR (status > 'active' AND status < 'cancelled') "
    "OR (status > 'cancelled' AND status < 'completed') "
    "OR (status > 'completed' AND status < 'pending') OR (status > 'pending' AND status < 'scheduled') "
    "OR status > 'scheduled' "
    "UNION SELECT rowid FROM lssm_jobs WHERE status = 'scheduled' AND run_at >= 9e999 "  # inf, TEXT, BLOB
    "UNION SELECT rowid FROM lssm_jobs WHERE queue >= x'' "
    "UNION SELECT rowid FROM lssm_jobs WHERE id >= x''"
)
_UNEXPIRING_LEASES = (
    "SELECT rowid FROM lssm_jobs WHERE status = 'active' AND lease_until IS NULL "
    "UNION SELECT rowid FROM lssm_jobs WHERE status = 'active' AND lease_until >= 9e999"
)
#: Finished jobs, as pruning selects them: ``status IN ('completed', 'cancelled')`` written exactly as the
#: predicate of the partial index lssm_jobs_retention_idx, which sqlite uses only for a query repeating it.
_FINISHED = "status IN ('completed', 'cancelled')"
_UNEXPIRING_COMPLETED = (
    f"SELECT rowid FROM lssm_jobs WHERE {_FINISHED} AND finished_at IS NULL "
    f"UNION SELECT rowid FROM lssm_jobs WHERE {_FINISHED} AND finished_at >= 9e999"
)
_UNEXPIRING = f"{_UNEXPIRING_LEASES} UNION {_UNEXPIRING_COMPLETED}"
#: Most rows one pruning transaction deletes, so it never holds the write lock for long.
PRUNE_BATCH = 2_000
#: One job (see :func:`_insert_row`), alone or in a batch's ``executemany`` once no id of the batch is a
#: dead letter. (``INSERT ... SELECT ... WHERE NOT EXISTS (dead letter)`` per row did the same at about half
#: the speed.)
_INSERT_JOB = (
    f"INSERT INTO lssm_jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, NULL, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
#: Most ids bound in one statement (sqlite's historical limit is 999 variables).
_ID_CHUNK = 500
#: Without a doorbell (see :mod:`lssm_jobs.backends.sqlite_doorbell`), how often a waiting lease asks
#: sqlite whether another connection committed (``PRAGMA data_version``, no table read).
FALLBACK_POLL = 0.25


class _WakeupHub:
    """Wake-ups for one database file. In this process: every lease waiting on the file (in any backend
    instance and any event loop) is woken when a job becomes ready. Across processes: the file's doorbell
    (:mod:`lssm_jobs.backends.sqlite_doorbell`), which this process rings after such commits and, while
    some backend here leases, listens to."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}
        self.path = path
        self.doorbell = Doorbell(doorbell_directory(path))
        self._listener_lock = threading.Lock()
        self._listener: DoorbellListener | None = None
        self._listening = 0  # backends of this process that lease on the file

    def listen(self) -> bool:
        """A backend starts leasing: make sure this process's doorbell socket is bound (once per process
        and file). :returns: whether rings from other processes will wake its leases."""
        with self._listener_lock:
            self._listening += 1
            listener = self._listener
            if listener is not None and listener.pid != os.getpid():  # inherited through fork
                listener.stop()
                listener = self._listener = None
            if listener is None:
                listener = DoorbellListener(self.doorbell.directory, self.notify, mode=self._mode())
                if not listener.start():
                    return False
                self._listener = listener
            return listener.listening

    def _mode(self) -> int | None:
        try:
            return os.stat(self.path).st_mode & 0o777
        except OSError:
            return None

    def unlisten(self) -> None:
        """A backend that called :meth:`listen` closes; the last one unbinds the socket."""
        with self._listener_lock:
            self._listening = max(self._listening - 1, 0)
            if self._listening == 0 and self._listener is not None:
                self._listener.stop()
                self._listener = None

    def ready(self) -> None:
        """Something became ready to lease: wake waiting leases here, and ring the other processes."""
        self.notify()
        self.doorbell.ring()

    def subscribe(self, event: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._waiters[event] = loop

    def waiting(self) -> int:
        """How many leases are waiting for a wake-up now."""
        with self._lock:
            return len(self._waiters)

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters.pop(event, None)

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters.items())
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for event, loop in waiters:
            if loop is current:
                event.set()
                continue
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed; its lease is gone
                self.unsubscribe(event)


# A hub lives as long as some backend on its file does.
_hubs: weakref.WeakValueDictionary[str, _WakeupHub] = weakref.WeakValueDictionary()
_hubs_lock = threading.Lock()


def _hub_for(path: str) -> _WakeupHub:
    key = os.path.realpath(path)
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None:
            hub = _hubs[key] = _WakeupHub(key)
        return hub


def _log_checkpoint_failure(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        log.warning("passive WAL checkpoint failed: %s", error)


def _any_dead(db: sqlite3.Connection, jobs: Sequence[OutgoingJob]) -> bool:
    """Whether the id of any of ``jobs`` is a dead letter's (the job was pushed before, and died)."""
    for start in range(0, len(jobs), _ID_CHUNK):
        ids = [job.id for job in jobs[start : start + _ID_CHUNK]]
        marks = ", ".join("?" * len(ids))
        if db.execute(f"SELECT 1 FROM lssm_dead_letters WHERE id IN ({marks}) LIMIT 1", ids).fetchone():
            return True
    return False


def _insert_row(job: OutgoingJob, now: float) -> tuple[Any, ...]:
    """The parameters of :data:`_INSERT_JOB` for ``job``, stored at ``now``."""
    return (
        job.id,
        job.type,
        job.queue,
        _waiting_status(job.run_at, now),
        job.priority,
        job.run_at,
        job.created_at,
        now,
        job.dedupe_key,
        job.body,
    )


def _waiting_status(run_at: float, now: float) -> str:
    return "scheduled" if run_at > now else "pending"


def _queue_filter(queues: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    if queues is None:
        return "", ()
    return f" AND queue IN ({', '.join('?' * len(queues))})", tuple(queues)


class SqliteBackend(PullBackend, WorkerRegistry):
    """A queue in a sqlite file. See the module docstring for guarantees, and ``docs/sqlite.md``.

    :param path: the database file (created if missing; its directory must exist).
    :param url: alternatively ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (the CLI's ``--url``).
    :param busy_timeout: seconds to wait for another process's write lock before an operation fails.
    :param completed_retention: seconds completed jobs stay readable with ``get``; 0 deletes them on ack.
    :param prune_interval: seconds between prunes of expired completed jobs (done by leasing workers).
    :param synchronous: ``"normal"`` (default; survives process crashes) or ``"full"`` (also power loss).
    :raises ValueError: neither or both of ``path`` and ``url``, an in-memory database, or a bad option.
    """

    name = "sqlite"
    capabilities = BackendCapabilities(
        purge_queue=True, cancel=True, progress=True, worker_registry=True, results=True
    )
    #: Whether a push of a few jobs may be written on the event loop's thread when the write lock is free
    #: (:mod:`lssm_jobs.backends.sqlite_loop_push`; only at ``synchronous="normal"``). False: every push
    #: goes to the database thread.
    push_on_loop = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        busy_timeout: float = 5.0,
        completed_retention: float = 3600.0,
        prune_interval: float = 60.0,
        synchronous: Synchronous = "normal",
    ) -> None:
        target = database_file(
            path,
            url,
            owner="the sqlite backend",
            instead="workers and producers share it; for an in-memory queue use the 'memory' backend",
        )
        for option, value in (("busy_timeout", busy_timeout), ("completed_retention", completed_retention)):
            if value < 0:
                raise ValueError(f"{option} must be >= 0, got {value!r}")
        if prune_interval <= 0:
            raise ValueError(f"prune_interval must be > 0, got {prune_interval!r}")
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
        self.path = target
        self.busy_timeout = float(busy_timeout)
        self.completed_retention = float(completed_retention)
        self.prune_interval = float(prune_interval)
        self.synchronous: Synchronous = synchronous
        #: False forces the pre-3.35 lease path (select, then update) even where RETURNING exists.
        self.use_returning = HAS_RETURNING
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None  # touched only on the executor's thread
        self._closed = False
        self._hub = _hub_for(target)
        self._waiters: set[asyncio.Event] = set()
        self._wake_generation = 0
        self._next_prune = 0.0
        # Settles riding along with a lease's transaction, and their outcomes once it committed (database
        # thread only; see _lease_with_settles).
        self._riding: list[_Settle] | None = None
        self._riding_outcomes: list[bool | Exception] | None = None
        # Connections of threads pushing through blocking_pusher (each used by its thread; closed on close).
        self._thread_connections = threading.local()
        self._opened_connections: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._loop_pusher: LoopPusher | None = None  # set while open, when push_on_loop applies
        # The group commit of settles (see _settle): those waiting, the task committing them, its loop.
        self._settles: list[tuple[_Settle, asyncio.Future[bool | Exception]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._settle_loop: asyncio.AbstractEventLoop | None = None
        #: Whether the doorbell wakes this backend's leases (None until the first lease binds it).
        self._doorbell: bool | None = None
        # The data_version and next due time of the last look that found nothing (the fallback poll).
        self._idle_version: int | None = None
        self._idle_next_due: float | None = None

    def __repr__(self) -> str:
        return f"SqliteBackend(path={self.path!r})"

    # -- the database thread -----------------------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on this instance's database thread."""
        executor = self._executor
        if executor is None or self._closed:
            raise QueueClosedError(f"the sqlite backend on {self.path!r} is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(function, *args))

    @property
    def _db(self) -> sqlite3.Connection:
        connection = self._connection
        if connection is None:
            raise QueueClosedError(f"the sqlite backend on {self.path!r} is not open")
        return connection

    async def run_in_connection(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function(connection)`` on this backend's database thread, with its connection.

        For components that keep their own state in the same file (e.g. a scheduler store). The connection
        is in autocommit mode: write inside
        :func:`~lssm_jobs.backends.sqlite_connection.immediate_transaction`.

        :raises QueueClosedError: the backend is not open.
        """
        return await self._run(lambda: function(self._db))

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file, switch it to WAL, and create or upgrade the tables.

        :raises ConnectionError: the file cannot be opened.
        :raises SchemaVersionError: the file was written by a newer lssm-jobs, or is not an lssm-jobs
            database.
        """
        if self._executor is not None:
            raise RuntimeError(f"{self!r} is already open")
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lssm-jobs-sqlite")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if self.push_on_loop and self.synchronous == "normal":
            self._loop_pusher = LoopPusher(
                self.path,
                store=self._store_jobs,
                register=self._keep_connection,
                checkpoint=self._checkpoint_soon,
            )

    def _keep_connection(self, connection: sqlite3.Connection) -> None:
        """Close ``connection`` (opened by another thread for this backend) when the backend closes."""
        with self._opened_lock:
            self._opened_connections.append(connection)

    def _checkpoint_soon(self) -> None:
        """A passive checkpoint on the database thread, not waited for (see sqlite_loop_push)."""
        executor = self._executor
        if executor is None or self._closed:
            return
        future = executor.submit(self._checkpoint_sync)
        future.add_done_callback(_log_checkpoint_failure)

    def _checkpoint_sync(self) -> None:
        if self._connection is not None:
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _open_sync(self) -> None:
        connection = connect(self.path, busy_timeout=self.busy_timeout, synchronous=self.synchronous)
        try:
            previous = ensure_schema(connection)
        except BaseException:
            connection.close()
            raise
        if previous > 0:
            log.info("upgraded the lssm-jobs schema of %s from version %d", self.path, previous)
        self._connection = connection

    async def close(self) -> None:
        """Close the connection; waiting leases return at once. Safe to call twice."""
        executor = self._executor
        if executor is None or self._closed:
            return
        self._loop_pusher = None
        self.wake()
        flusher = self._flusher
        if flusher is not None and flusher.get_loop() is asyncio.get_running_loop():
            # Settles still waiting for the group commit are committed, not dropped.
            with contextlib.suppress(Exception):
                await asyncio.shield(flusher)
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            self._closed = True
            self._executor = None
            executor.shutdown(wait=False)
            if self._doorbell is not None:
                self._doorbell = None
                self._hub.unlisten()

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        with self._opened_lock:
            opened, self._opened_connections = self._opened_connections, []
            self._thread_connections = threading.local()
        for connection in opened:
            connection.close()

    # -- producing ---------------------------------------------------------------------------------------

    async def push(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        if not jobs:
            return []
        # A few jobs are written on this thread when the write lock is free (sqlite_loop_push); otherwise,
        # and for batches, on the database thread.
        pusher = self._loop_pusher  # None while closed
        if pusher is not None:
            results = pusher.push(jobs)
            if results is not None:
                if any(result.created for result in results):
                    self._hub.ready()
                return results
        results = await self._run(self._push_sync, list(jobs))
        if any(result.created for result in results):
            self._hub.notify()
        return results

    def _push_sync(self, jobs: list[OutgoingJob]) -> list[PushResult]:
        results = self._push_with(self._db, jobs)
        if any(result.created for result in results):
            self._hub.doorbell.ring()
        return results

    def _push_with(self, db: sqlite3.Connection, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        """Store ``jobs`` in one write transaction on ``db``."""
        with immediate_transaction(db):
            return self._store_jobs(db, jobs)

    def _store_jobs(self, db: sqlite3.Connection, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        """Store ``jobs`` inside the caller's write transaction on ``db``: a batch without dedupe keys and
        without ids of dead letters through one ``executemany`` (every job new: the common case), anything
        else job by job."""
        now = time.time()
        if len(jobs) > 1 and all(job.dedupe_key is None for job in jobs) and not _any_dead(db, jobs):
            db.execute("SAVEPOINT lssm_push")
            stored = db.executemany(_INSERT_JOB, (_insert_row(job, now) for job in jobs)).rowcount
            if stored == len(jobs):
                db.execute("RELEASE lssm_push")
                return [new_push_result(job.id, True) for job in jobs]
            # Some id was stored before (a retried push): find out which, one by one.
            db.execute("ROLLBACK TO lssm_push")
            db.execute("RELEASE lssm_push")
        return [self._push_one(db, job, now) for job in jobs]

    @staticmethod
    def _push_one(db: sqlite3.Connection, job: OutgoingJob, now: float) -> PushResult:
        if job.dedupe_key is not None:
            live = db.execute(
                f"SELECT id FROM lssm_jobs WHERE dedupe_key = ? AND status IN {_LIVE} LIMIT 1",
                (job.dedupe_key,),
            ).fetchone()
            if live is not None:
                return PushResult(id=id_of(live[0]), created=False)
        if db.execute("SELECT 1 FROM lssm_dead_letters WHERE id = ?", (job.id,)).fetchone():
            return PushResult(id=job.id, created=False)  # already pushed, and died
        inserted = db.execute(_INSERT_JOB, _insert_row(job, now))
        return new_push_result(job.id, inserted.rowcount == 1)

    def blocking_pusher(self) -> Callable[[Sequence[OutgoingJob]], list[PushResult]] | None:
        """Pushes from synchronous code on the calling thread, over a connection of that thread's own
        (``lssm_jobs.blocking`` enqueues through it without an event loop)."""
        if self._executor is None or self._closed:
            return None
        return self._push_blocking

    def _push_blocking(self, jobs: Sequence[OutgoingJob]) -> list[PushResult]:
        if self._executor is None or self._closed:
            raise QueueClosedError(f"the sqlite backend on {self.path!r} is not open")
        if not jobs:
            return []
        connection: sqlite3.Connection | None = getattr(self._thread_connections, "connection", None)
        if connection is None:
            connection = connect(
                self.path,
                busy_timeout=self.busy_timeout,
                synchronous=self.synchronous,
                check_same_thread=False,
            )
            self._thread_connections.connection = connection
            self._keep_connection(connection)
        results = self._push_with(connection, jobs)
        if any(result.created for result in results):
            self._hub.ready()
        return results

    # -- consuming ---------------------------------------------------------------------------------------

    async def lease(
        self, *, queues: Sequence[str] | None, limit: int, lease_ms: int, wait: float
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        if queues is not None and not queues:
            raise ValueError("queues must be None (every queue) or a non-empty list of queue names")
        names = tuple(queues) if queues is not None else None
        deadline = time.monotonic() + max(wait, 0.0)
        generation = self._wake_generation
        loop = asyncio.get_running_loop()
        if self._doorbell is None:
            # Bound before the first look, so a push committed after that look finds this process's socket.
            self._doorbell = self._hub.listen()
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        self._hub.subscribe(waiter, loop)
        only_if_changed = False
        try:
            while True:
                waiter.clear()  # before looking, so a push that lands meanwhile still wakes the wait below
                rows: list[_LeasedRow]
                if only_if_changed and not await self._run(self._changed_sync):
                    rows, next_due = [], self._idle_next_due  # nobody committed since the last look
                else:
                    rows, next_due = await self._lease_once(names, limit, lease_ms)
                if rows:
                    return [_SqliteDelivery(self, row, lease_ms) for row in rows]
                if self._wake_generation != generation or self._closed:
                    return []
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return []
                if next_due is not None:
                    timeout = min(timeout, max(next_due - time.time(), 0.001))
                polling = not self._doorbell and timeout > FALLBACK_POLL
                if polling:
                    timeout = FALLBACK_POLL
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter.wait(), timeout)
                if self._wake_generation != generation or self._closed:
                    return []
                # Without a doorbell, a wake-up by the poll's timer first asks whether any connection
                # committed since the last look (PRAGMA data_version), and looks for work only then.
                only_if_changed = polling and not waiter.is_set()
        finally:
            self._hub.unsubscribe(waiter)
            self._waiters.discard(waiter)

    async def _lease_once(
        self, queues: tuple[str, ...] | None, limit: int, lease_ms: int
    ) -> tuple[list[_LeasedRow], float | None]:
        """One look for work (and lease) on the database thread, committing the settles waiting for the
        group commit in the same transaction; jobs leased for a caller cancelled meanwhile are given back."""
        loop = asyncio.get_running_loop()
        batch: list[tuple[_Settle, asyncio.Future[bool | Exception]]] = []
        if self._settles and self._settle_loop is loop:
            batch, self._settles = self._settles, []
        future = loop.run_in_executor(
            self._executor_or_raise(),
            functools.partial(self._lease_with_settles, queues, limit, lease_ms, [s for s, _ in batch]),
        )
        if batch:
            future.add_done_callback(functools.partial(_resolve_settles, batch))
        try:
            leased, _ = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._release_abandoned)
            raise
        if isinstance(leased, Exception):
            raise leased
        return leased

    def _executor_or_raise(self) -> ThreadPoolExecutor:
        if self._executor is None or self._closed:
            raise QueueClosedError(f"the sqlite backend on {self.path!r} is not open")
        return self._executor

    def _release_abandoned(
        self, future: asyncio.Future[tuple[tuple[list[_LeasedRow], float | None] | Exception, Any]]
    ) -> None:
        """A lease call was cancelled after its transaction ran: give its jobs back instead of leaving them
        active until their lease expires."""
        if future.cancelled() or future.exception() is not None:
            return
        leased, _ = future.result()
        if isinstance(leased, Exception):
            return
        rows, _ = leased
        executor = self._executor
        if rows and executor is not None and not self._closed:
            for row in rows:
                executor.submit(self._settle_now, _Settle(kind="release", job_id=row.id, token=row.token))

    def _lease_with_settles(
        self, queues: tuple[str, ...] | None, limit: int, lease_ms: int, settles: list[_Settle]
    ) -> tuple[tuple[list[_LeasedRow], float | None] | Exception, list[bool | Exception] | Exception]:
        """A lease, with the waiting ``settles`` committed in its transaction (or, when the lease found
        nothing to take or failed, in one of their own). :returns: the lease's answer (or its error) and the
        settles' outcomes (or the error that stopped them all)."""
        self._riding, self._riding_outcomes = (settles or None), None
        leased: tuple[list[_LeasedRow], float | None] | Exception
        try:
            leased = self._lease_sync(queues, limit, lease_ms)
        except Exception as error:
            leased = error
        finally:
            self._riding = None
        committed = self._take_riding_outcomes()
        outcomes: list[bool | Exception] | Exception = []
        if committed is not None:
            outcomes = committed
            self._ring_if_ready(settles, committed)
        elif settles:
            try:
                outcomes = self._settle_sync(settles)
            except Exception as error:
                outcomes = error
        return leased, outcomes

    def _take_riding_outcomes(self) -> list[bool | Exception] | None:
        """The outcomes of the settles the last lease transaction committed (None: it committed none)."""
        outcomes, self._riding_outcomes = self._riding_outcomes, None
        return outcomes

    def _changed_sync(self) -> bool:
        """Whether another connection committed since the last look that found no work."""
        return bool(self._db.execute("PRAGMA data_version").fetchone()[0] != self._idle_version)

    def _lease_sync(
        self, queues: tuple[str, ...] | None, limit: int, lease_ms: int
    ) -> tuple[list[_LeasedRow], float | None]:
        db, now = self._db, time.time()
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if now >= self._next_prune:
            try:
                self._prune_sync(now)
                self._sweep_sync(now)
            except sqlite3.OperationalError as error:  # housekeeping must not stop leasing; next time
                log.warning("could not prune or sweep %s: %s", self.path, error)
        if not self._has_work(db, queues, now):
            self._idle_version, self._idle_next_due = version, self._next_due(db)
            return [], self._idle_next_due
        token = uuid.uuid4().hex
        riding, self._riding = self._riding, None
        with immediate_transaction(db):
            # Settles waiting for the group commit ride along: one commit instead of two.
            riding_outcomes: list[bool | Exception] | None = (
                [self._apply(db, settle, now) for settle in riding] if riding else None
            )
            # Scheduled jobs whose time has come become pending; jobs whose worker died become pending again.
            db.execute(
                "UPDATE lssm_jobs SET status = 'pending', updated_at = ? "
                "WHERE status = 'scheduled' AND run_at <= ?",
                (now, now),
            )
            # (a job with a cancel request whose worker died is cancelled instead: it must not run again)
            db.execute(
                "UPDATE lssm_jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END, "
                "finished_at = CASE WHEN cancel_requested THEN ? ELSE finished_at END, cancel_requested = 0, "
                "lease_until = NULL, lease_token = NULL, updated_at = ? WHERE status = 'active' AND lease_until <= ?",
                (now, now, now),
            )
            where, params = _queue_filter(queues)
            # 'pending' is only ever written for jobs already due, so no run_at test: that keeps sqlite on
            # the lease indexes, read in ORDER BY order, instead of sorting every pending job. Rows are
            # picked by rowid, which stays an integer whatever the other columns were changed to.
            pick = (
                f"SELECT rowid FROM lssm_jobs WHERE status = 'pending'{where} "
                "ORDER BY priority DESC, run_at, created_at LIMIT ?"
            )
            assign = (
                "UPDATE lssm_jobs SET status = 'active', attempts = attempts + 1, lease_until = ?, "
                "lease_token = ?, updated_at = ?"
            )
            returned = f"rowid, {_LEASED_COLUMNS}"
            lease_until = now + lease_ms / 1000
            if self.use_returning:
                rows = db.execute(
                    f"{assign} WHERE rowid IN ({pick}) RETURNING {returned}",
                    (lease_until, token, now, *params, limit),
                ).fetchall()
            else:
                rowids = [row[0] for row in db.execute(pick, (*params, limit)).fetchall()]
                marks = ", ".join("?" * len(rowids))
                rows = []
                if rowids:
                    db.execute(f"{assign} WHERE rowid IN ({marks})", (lease_until, token, now, *rowids))
                    rows = db.execute(
                        f"SELECT {returned} FROM lssm_jobs WHERE rowid IN ({marks})", rowids
                    ).fetchall()
            leased = []
            for r in rows:
                wrong = problems(r[1:], _LEASED_KINDS)
                if wrong:
                    # Checked before the lease commits: a row that cannot be read goes to the dead letter
                    # queue in this same transaction, and the healthy rows leased with it run as usual.
                    self._bury(db, r[0], wrong, now)
                    continue
                leased.append(
                    _LeasedRow(
                        id=r[1],
                        queue=r[2],
                        attempts=r[3],
                        priority=r[4],
                        run_at=r[5],
                        created_at=r[6],
                        body=r[7],
                        token=token,
                    )
                )
        self._riding_outcomes = riding_outcomes  # committed
        if not leased:  # the work seen was in other queues (now promoted or reclaimed for them)
            return [], self._next_due(db)
        leased.sort(key=lambda row: (-row.priority, row.run_at, row.created_at))
        return leased, None

    def _bury(self, db: sqlite3.Connection, rowid: int, wrong: Sequence[str], now: float) -> None:
        """Move the unreadable row ``rowid`` of ``lssm_jobs`` to the dead letter queue (inside the caller's
        write transaction), every value turned into what its dead-letter column needs and the body kept
        byte for byte, with a reason naming what was wrong."""
        row = db.execute(
            "SELECT id, type, queue, priority, run_at, created_at, dedupe_key, attempts, last_error, body "
            "FROM lssm_jobs WHERE rowid = ?",
            (rowid,),
        ).fetchone()
        if row is None:
            return
        job_id = clean_id(row[0])
        if db.execute("SELECT 1 FROM lssm_dead_letters WHERE id = ?", (job_id,)).fetchone() is not None:
            job_id = f"{job_id}#row{rowid}"  # never replace another dead letter
        reason = f"corrupt record: {'; '.join(wrong)} (changed outside lssm-jobs?)"
        db.execute(
            f"INSERT INTO lssm_dead_letters ({_DEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            (
                job_id,
                text_of(row[1], "?"),
                text_of(row[2], "default"),
                int_of(row[3]),
                real_of(row[4], now),
                real_of(row[5], now),
                optional_text_of(row[6]),
                int_of(row[7]),
                reason,
                optional_text_of(row[8]),
                now,
                blob_of(row[9]),
            ),
        )
        db.execute("DELETE FROM lssm_jobs WHERE rowid = ?", (rowid,))
        log.warning("job %s moved to the dead letter queue: %s", job_id, reason)

    def _sweep_sync(self, now: float) -> int:
        """Find the rows no lease would ever pick or finish, because a column that leasing selects on holds
        something it cannot compare (an unknown status, a TEXT ``run_at`` on a scheduled job, a BLOB queue
        name or id, an unreadable lease expiry): dead-letter them, reclaim leases that cannot expire, and
        delete finished (completed or cancelled) jobs whose finish time cannot expire. Every condition is an
        index range, so a healthy table costs a few index probes. Runs with the completed-job pruning.

        :returns: how many rows were dead-lettered, reclaimed or deleted.
        """
        db = self._db
        any_stuck = f"SELECT count(*) FROM (SELECT 1 FROM ({_UNREADABLE} UNION {_UNEXPIRING}) LIMIT 1)"
        if not db.execute(any_stuck).fetchone()[0]:
            return 0
        changed = 0
        with immediate_transaction(db):
            for rowid, status, run_at, queue, job_id in db.execute(
                f"SELECT rowid, status, run_at, queue, id FROM lssm_jobs WHERE rowid IN ({_UNREADABLE})"
            ).fetchall():
                wrong = problems(
                    (status, queue, job_id), (("status", "text"), ("queue", "text"), ("id", "text"))
                )
                if status not in _STATUSES and not wrong:
                    wrong = [f"unknown status {text_of(status)!r}"]
                elif status == "scheduled" and not wrong:
                    wrong = [describe("run_at", run_at)]
                self._bury(db, rowid, wrong or ["unreadable row"], now)
                changed += 1
            reclaimed = db.execute(
                "UPDATE lssm_jobs SET status = 'pending', lease_until = NULL, lease_token = NULL, "
                f"updated_at = ? WHERE rowid IN ({_UNEXPIRING_LEASES})",
                (now,),
            ).rowcount
            if reclaimed:
                log.warning("%d active jobs had an unreadable lease expiry; they are ready again", reclaimed)
            deleted = db.execute(f"DELETE FROM lssm_jobs WHERE rowid IN ({_UNEXPIRING_COMPLETED})").rowcount
            if deleted:
                log.warning("%d finished jobs had an unreadable finished_at; deleted as expired", deleted)
        return changed + reclaimed + deleted

    @staticmethod
    def _has_work(db: sqlite3.Connection, queues: tuple[str, ...] | None, now: float) -> bool:
        """A read-only look before taking the write lock, so idle workers do not queue for it."""
        where, params = _queue_filter(queues)
        row = db.execute(
            f"SELECT EXISTS (SELECT 1 FROM lssm_jobs WHERE status = 'pending'{where}) "
            "OR EXISTS (SELECT 1 FROM lssm_jobs WHERE status = 'scheduled' AND run_at <= ?) "
            "OR EXISTS (SELECT 1 FROM lssm_jobs WHERE status = 'active' AND lease_until <= ?)",
            (*params, now, now),
        ).fetchone()
        return bool(row[0])

    @staticmethod
    def _next_due(db: sqlite3.Connection) -> float | None:
        """When something may next become ready: the earliest scheduled run_at or lease expiry."""
        row = db.execute(
            "SELECT (SELECT min(run_at) FROM lssm_jobs WHERE status = 'scheduled'), "
            "(SELECT min(lease_until) FROM lssm_jobs WHERE status = 'active')"
        ).fetchone()
        times = [value for value in row if type(value) in (int, float)]  # a corrupt TEXT time is swept
        return min(times) if times else None

    def wake(self) -> None:
        self._wake_generation += 1
        for waiter in list(self._waiters):
            waiter.set()

    # -- settling (called by deliveries; each returns False when the lease was lost) ---------------------
    #
    # Deliveries settle through a group commit: their ack, retry, dead-letter and release wait in
    # ``_settles`` while the database thread is busy, and the next flush applies all of them in one
    # transaction (a worker with many jobs finishing at once commits their outcomes together).

    _HELD = "id = ? AND lease_token = ? AND status = 'active'"

    def _ack_statement(self, now: float) -> tuple[str, tuple[float, ...]]:
        """The statement acking one held lease, and its parameters before ``(job id, token)``."""
        if self.completed_retention <= 0:
            return f"DELETE FROM lssm_jobs WHERE {self._HELD}", ()
        return (
            "UPDATE lssm_jobs SET status = 'completed', finished_at = ?, updated_at = ?, "
            f"lease_until = NULL, lease_token = NULL WHERE {self._HELD}"
        ), (now, now)

    def _apply(self, db: sqlite3.Connection, settle: _Settle, now: float) -> bool:
        """Apply one settle inside the caller's write transaction. :returns: whether the lease was held."""
        kind, job_id, token = settle.kind, settle.job_id, settle.token
        if kind == "ack":
            sql, stamps = self._ack_statement(now)
            return db.execute(sql, (*stamps, job_id, token)).rowcount == 1
        if kind == "cancel":
            return db.execute(self._CANCEL_HELD, (now, now, job_id, token)).rowcount == 1
        if kind in ("retry", "release") and self._cancel_instead(db, job_id, token, now):
            return True
        if kind == "retry":
            run_at = cast(float, settle.run_at)
            return (
                db.execute(
                    "UPDATE lssm_jobs SET status = ?, run_at = ?, last_error = ?, updated_at = ?, "
                    f"lease_until = NULL, lease_token = NULL WHERE {self._HELD}",
                    (_waiting_status(run_at, now), run_at, settle.error, now, job_id, token),
                ).rowcount
                == 1
            )
        if kind == "release":
            return (
                db.execute(
                    "UPDATE lssm_jobs SET status = 'pending', attempts = max(attempts - 1, 0), "
                    f"updated_at = ?, lease_until = NULL, lease_token = NULL WHERE {self._HELD}",
                    (now, job_id, token),
                ).rowcount
                == 1
            )
        copied = db.execute(  # dead-letter
            f"INSERT OR REPLACE INTO lssm_dead_letters ({_DEAD_COLUMNS}) "
            "SELECT id, type, queue, priority, run_at, created_at, dedupe_key, attempts, "
            f"?, ?, ?, ?, body FROM lssm_jobs WHERE {self._HELD}",
            (settle.reason, settle.error, settle.traceback, now, job_id, token),
        )
        if copied.rowcount != 1:
            return False
        db.execute("DELETE FROM lssm_jobs WHERE id = ?", (job_id,))
        return True

    def _settle_sync(self, settles: Sequence[_Settle]) -> list[bool | Exception]:
        """Apply ``settles`` in one transaction; per settle, whether its lease was held. When the batch
        fails for a reason other than the write lock, each is tried in its own transaction, so one settle
        that cannot be applied fails alone. Rings the doorbell when a job became ready again."""
        now = time.time()
        outcomes: list[bool | Exception]
        try:
            with immediate_transaction(self._db) as db:
                outcomes = [self._apply(db, settle, now) for settle in settles]
        except sqlite3.OperationalError:
            raise  # locked or busy: every settle of the batch fails alike
        except sqlite3.Error as error:
            if len(settles) == 1:
                raise
            log.warning("a batch of %d settles failed (%s); applying them one by one", len(settles), error)
            outcomes = []
            for settle in settles:
                try:
                    with immediate_transaction(self._db) as db:
                        outcomes.append(self._apply(db, settle, now))
                except sqlite3.Error as single:
                    outcomes.append(single)
        self._ring_if_ready(settles, outcomes)
        return outcomes

    def _ring_if_ready(self, settles: Sequence[_Settle], outcomes: Sequence[bool | Exception]) -> None:
        """Ring the doorbell when a retry or release made a job ready again."""
        if any(
            outcome is True and settle.kind in ("retry", "release")
            for settle, outcome in zip(settles, outcomes, strict=True)
        ):
            self._hub.doorbell.ring()

    async def _settle(self, settle: _Settle) -> bool:
        """Queue ``settle`` for the next group commit and wait for it. :returns: whether the lease was held."""
        loop = asyncio.get_running_loop()
        if self._settle_loop is not loop:
            if self._settle_loop is not None and (self._settles or self._flusher is not None):
                # another event loop's group commit is under way: this settle commits on its own
                (outcome,) = await self._run(self._settle_sync, [settle])
                return self._settled(settle, outcome)
            self._settle_loop = loop
        future: asyncio.Future[bool | Exception] = loop.create_future()
        self._settles.append((settle, future))
        if self._flusher is None:
            # The first batch goes to the database thread now, in order with whatever this caller does
            # next (a get after an ack sees the ack); the task commits what arrives meanwhile.
            batch, self._settles = self._settles, []
            self._flusher = loop.create_task(self._flush_settles(batch, self._commit_settles(batch)))
        return self._settled(settle, await future)

    def _settled(self, settle: _Settle, outcome: bool | Exception) -> bool:
        if isinstance(outcome, Exception):
            raise outcome
        if outcome and settle.kind in ("retry", "release"):
            self._hub.notify()
        return outcome

    def _commit_settles(
        self, batch: list[tuple[_Settle, asyncio.Future[bool | Exception]]]
    ) -> asyncio.Future[list[bool | Exception]]:
        """Hand a batch to the database thread now. :returns: its outcomes, or the error (e.g. closed)."""
        loop = asyncio.get_running_loop()
        try:
            return loop.run_in_executor(
                self._executor_or_raise(), self._settle_sync, [settle for settle, _ in batch]
            )
        except Exception as error:
            failed: asyncio.Future[list[bool | Exception]] = loop.create_future()
            failed.set_exception(error)
            return failed

    async def _flush_settles(
        self,
        batch: list[tuple[_Settle, asyncio.Future[bool | Exception]]],
        committing: asyncio.Future[list[bool | Exception]],
    ) -> None:
        """Wait for the batch being committed, then commit the settles that arrived meanwhile, a batch at a
        time, until none is left."""
        try:
            while True:
                try:
                    outcomes = await committing
                except BaseException as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                else:
                    for (_, future), outcome in zip(batch, outcomes, strict=True):
                        if not future.done():
                            future.set_result(outcome)
                if not self._settles:
                    return
                batch, self._settles = self._settles, []
                committing = self._commit_settles(batch)
        finally:
            self._flusher = None

    def _settle_now(self, settle: _Settle) -> bool:
        """One settle in its own transaction, on the database thread (releases of abandoned leases)."""
        outcome = self._settle_sync([settle])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    _CANCEL_HELD = (
        "UPDATE lssm_jobs SET status = 'cancelled', finished_at = ?, updated_at = ?, cancel_requested = 0, "
        f"lease_until = NULL, lease_token = NULL WHERE {_HELD}"
    )

    def _cancel_instead(self, db: sqlite3.Connection, job_id: str, token: str, now: float) -> bool:
        """Inside a settle's transaction: a held job with a cancel request waiting is cancelled (not
        retried or released). :returns: whether it was."""
        return (
            db.execute(f"{self._CANCEL_HELD} AND cancel_requested", (now, now, job_id, token)).rowcount == 1
        )

    def _cancel_sync(self, job_id: str) -> str:
        now = time.time()
        with immediate_transaction(self._db) as db:
            row = db.execute(
                "SELECT status, finished_at FROM lssm_jobs WHERE id = CAST(? AS TEXT)", (id_param(job_id),)
            ).fetchone()
            if row is None:
                return "finished" if _dead_rowid(db, job_id) is not None else "not_found"
            status = row[0]
            if status in ("scheduled", "pending"):
                db.execute(
                    "UPDATE lssm_jobs SET status = 'cancelled', finished_at = ?, updated_at = ? "
                    "WHERE id = CAST(? AS TEXT)",
                    (now, now, id_param(job_id)),
                )
                return "removed"
            if status == "active":
                db.execute(
                    "UPDATE lssm_jobs SET cancel_requested = 1 WHERE id = CAST(? AS TEXT)",
                    (id_param(job_id),),
                )
                return "requested"
            _, cutoff = self._expired_completed(now)
            if status in ("completed", "cancelled") and row[1] is not None and row[1] <= cutoff:
                return "not_found"  # past its retention, not pruned yet: get does not find it either
            return "finished"

    async def cancel(self, job_id: str) -> CancelOutcome:
        outcome = await self._run(self._cancel_sync, job_id)
        return cast(CancelOutcome, outcome)

    def _cancel_requested_sync(self, job_ids: list[str]) -> set[str]:
        found: set[str] = set()
        db = self._db
        for start in range(0, len(job_ids), 500):  # sqlite limits the number of parameters
            chunk = job_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found.update(
                id_of(row[0])
                for row in db.execute(
                    f"SELECT id FROM lssm_jobs WHERE id IN ({marks}) AND status = 'active' AND cancel_requested",
                    chunk,
                )
            )
        return found

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        return await self._run(self._cancel_requested_sync, list(job_ids))

    def _set_progress_sync(self, job_id: str, progress: str) -> bool:
        with immediate_transaction(self._db) as db:
            return (
                db.execute(
                    f"UPDATE lssm_jobs SET progress = ? WHERE id = CAST(? AS TEXT) AND status IN {_LIVE}",
                    (progress, id_param(job_id)),
                ).rowcount
                == 1
            )

    async def set_progress(self, job_id: str, progress: str) -> bool:
        return await self._run(self._set_progress_sync, job_id, progress)

    _EXTEND = f"UPDATE lssm_jobs SET lease_until = ? WHERE {_HELD}"

    def _extend_sync(self, job_id: str, token: str, lease_ms: int) -> bool:
        with immediate_transaction(self._db) as db:
            return db.execute(self._EXTEND, (time.time() + lease_ms / 1000, job_id, token)).rowcount == 1

    def _extend_many_sync(self, leases: Sequence[tuple[str, str]], lease_ms: int) -> list[bool]:
        """Extend ``(job id, lease token)`` pairs in one transaction; per pair, whether the lease was held."""
        until = time.time() + lease_ms / 1000
        with immediate_transaction(self._db) as db:
            return [
                db.execute(self._EXTEND, (until, job_id, token)).rowcount == 1 for job_id, token in leases
            ]

    # -- batch settling (one call for many deliveries) ----------------------------------------------------

    def _own_leases(self, deliveries: Sequence[Delivery]) -> list[tuple[str, str]] | None:
        """``(job id, lease token)`` of each delivery, or None when some were not leased by this backend."""
        leases = []
        for delivery in deliveries:
            if not isinstance(delivery, _SqliteDelivery) or delivery._backend is not self:
                return None
            leases.append((delivery.id, delivery._token))
        return leases

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Ack every delivery in one transaction (deliveries of other backends one by one)."""
        leases = self._own_leases(deliveries)
        if leases is None:
            await super().ack_many(deliveries)
            return
        if leases:
            outcomes = await self._run(
                self._settle_sync,
                [_Settle(kind="ack", job_id=job_id, token=token) for job_id, token in leases],
            )
            for delivery, outcome in zip(deliveries, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    raise outcome
                if not outcome:
                    cast(_SqliteDelivery, delivery)._lost("ack")

    async def extend_many(self, deliveries: Sequence[Delivery], lease_ms: int) -> list[bool]:
        """Extend every lease in one transaction (deliveries of other backends one by one)."""
        leases = self._own_leases(deliveries)
        if leases is None:
            return await super().extend_many(deliveries, lease_ms)
        return await self._run(self._extend_many_sync, leases, lease_ms) if leases else []

    # -- inspection --------------------------------------------------------------------------------------

    def _expired_completed(self, now: float) -> tuple[str, float]:
        """A condition hiding completed jobs past their retention that were not pruned yet."""
        return f"{_FINISHED} AND finished_at <= ?", now - self.completed_retention

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._run(self._get_sync, job_id)

    def _get_sync(self, job_id: str) -> JobRecord | None:
        now = time.time()
        expired, cutoff = self._expired_completed(now)
        with read_transaction(self._db) as db:
            row = db.execute(
                f"SELECT {_JOB_COLUMNS}, progress, cancel_requested FROM lssm_jobs "
                f"WHERE id = CAST(? AS TEXT) AND NOT ({expired})",
                (id_param(job_id), cutoff),
            ).fetchone()
            if row is not None:
                return _job_record(row, now)
            rowid = _dead_rowid(db, job_id)
            dead = (
                None
                if rowid is None
                else db.execute(
                    f"SELECT {_DEAD_COLUMNS} FROM lssm_dead_letters WHERE rowid = ?", (rowid,)
                ).fetchone()
            )
        if dead is None:
            return None
        letter = _dead_letter(dead)
        return JobRecord(
            id=letter.id,
            type=letter.type,
            queue=letter.queue,
            status=JobStatus.DEAD,
            attempts=letter.attempts,
            priority=int_of(dead[3]),
            run_at=real_of(dead[4], letter.failed_at),
            created_at=real_of(dead[5], letter.failed_at),
            updated_at=letter.failed_at,
            dedupe_key=optional_text_of(dead[6]),
            last_error=letter.error,
            body=letter.body,
        )

    async def counts(self) -> dict[str, dict[JobStatus, int]]:
        return await self._run(self._counts_sync)

    def _counts_sync(self) -> dict[str, dict[JobStatus, int]]:
        now = time.time()
        expired, cutoff = self._expired_completed(now)
        counts: dict[str, dict[JobStatus, int]] = {}
        with read_transaction(self._db) as db:
            jobs = db.execute(
                "SELECT \"queue\", CASE WHEN \"status\" IN ('scheduled', 'pending') THEN "
                "(CASE WHEN run_at > ? THEN 'scheduled' ELSE 'pending' END) ELSE status END AS state, "
                f"count(*) FROM lssm_jobs WHERE NOT ({expired}) GROUP BY queue, state",
                (now, cutoff),
            ).fetchall()
            dead = db.execute(
                "SELECT queue, 'dead', count(*) FROM lssm_dead_letters GROUP BY queue"
            ).fetchall()
        for queue, state, count in [*jobs, *dead]:
            if state not in _STATUSES and state != "dead":
                log.warning(
                    "%d jobs in queue %r have an unknown status %r; workers move them to the dead letter "
                    "queue",
                    count,
                    text_of(queue),
                    text_of(state),
                )
                continue
            per_queue = counts.setdefault(text_of(queue, "default"), {})
            per_queue[JobStatus(state)] = per_queue.get(JobStatus(state), 0) + count
        return counts

    async def list_dead(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        return await self._run(self._list_dead_sync, limit, offset)

    def _list_dead_sync(self, limit: int, offset: int) -> list[DeadLetter]:
        rows = self._db.execute(
            f"SELECT {_DEAD_COLUMNS} FROM lssm_dead_letters ORDER BY failed_at DESC, id DESC "
            "LIMIT ? OFFSET ?",
            (max(limit, 0), max(offset, 0)),
        ).fetchall()
        return [_dead_letter(row) for row in rows]

    async def get_dead(self, job_id: str) -> DeadLetter | None:
        return await self._run(self._get_dead_sync, job_id)

    def _get_dead_sync(self, job_id: str) -> DeadLetter | None:
        rowid = _dead_rowid(self._db, job_id)
        if rowid is None:
            return None
        row = self._db.execute(
            f"SELECT {_DEAD_COLUMNS} FROM lssm_dead_letters WHERE rowid = ?", (rowid,)
        ).fetchone()
        return _dead_letter(row) if row is not None else None

    async def replay_dead(self, job_id: str, *, run_at: float) -> bool:
        """:raises DedupeConflictError: a live job holds the dead letter's dedupe key; nothing changed."""
        replayed = await self._run(self._replay_dead_sync, job_id, run_at)
        if replayed:
            self._hub.ready()
        return replayed

    def _replay_dead_sync(self, job_id: str, run_at: float) -> bool:
        now = time.time()
        with immediate_transaction(self._db) as db:
            rowid = _dead_rowid(db, job_id)
            if rowid is None:
                return False
            row = db.execute(
                "SELECT id, type, queue, priority, created_at, dedupe_key, error, body "
                "FROM lssm_dead_letters WHERE rowid = ?",
                (rowid,),
            ).fetchone()
            # Every value as its column needs it, so that whatever was done to the dead letter, the job
            # it becomes can be leased (an unreadable body is then dead-lettered again by the worker).
            job_id = clean_id(row[0])
            dedupe_key = optional_text_of(row[5])
            if dedupe_key is not None:
                live = db.execute(
                    f"SELECT id FROM lssm_jobs WHERE dedupe_key = ? AND status IN {_LIVE} AND id != ? LIMIT 1",
                    (dedupe_key, job_id),
                ).fetchone()
                if live is not None:
                    raise DedupeConflictError(job_id, dedupe_key, id_of(live[0]))
            # A completed run of the same id may still be retained; the replay replaces it.
            db.execute("DELETE FROM lssm_jobs WHERE id = ?", (job_id,))
            db.execute(
                f"INSERT INTO lssm_jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    text_of(row[1], "?"),
                    text_of(row[2], "default"),
                    _waiting_status(run_at, now),
                    int_of(row[3]),
                    run_at,
                    real_of(row[4], now),
                    now,
                    dedupe_key,
                    optional_text_of(row[6]),
                    blob_of(row[7]),
                ),
            )
            db.execute("DELETE FROM lssm_dead_letters WHERE rowid = ?", (rowid,))
        return True

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        return await self._run(self._purge_dead_sync, None if job_ids is None else list(job_ids))

    def _purge_dead_sync(self, job_ids: list[str] | None) -> int:
        with immediate_transaction(self._db) as db:
            if job_ids is None:
                return db.execute("DELETE FROM lssm_dead_letters").rowcount
            wanted = set(job_ids)
            plain = [job_id for job_id in wanted if isinstance(id_param(job_id), str)]
            purged = 0
            for start in range(0, len(plain), _ID_CHUNK):
                chunk = plain[start : start + _ID_CHUNK]
                marks = ", ".join("?" * len(chunk))
                purged += db.execute(f"DELETE FROM lssm_dead_letters WHERE id IN ({marks})", chunk).rowcount
            if purged < len(wanted):  # ids of dead letters whose id column was changed (BLOB, bad UTF-8)
                for job_id in wanted:
                    rowid = _dead_rowid(db, job_id)
                    if rowid is not None:
                        purged += db.execute(
                            "DELETE FROM lssm_dead_letters WHERE rowid = ?", (rowid,)
                        ).rowcount
            return purged

    async def purge_queue(self, queue: str) -> int:
        return await self._run(self._purge_queue_sync, queue)

    def _purge_queue_sync(self, queue: str) -> int:
        deleted = 0
        while True:  # in batches, so the write lock is never held for long
            with immediate_transaction(self._db) as db:
                batch = db.execute(
                    "DELETE FROM lssm_jobs WHERE rowid IN (SELECT rowid FROM lssm_jobs WHERE queue = ? AND "
                    "status IN ('scheduled', 'pending') LIMIT ?)",
                    (queue, PRUNE_BATCH),
                ).rowcount
            deleted += batch
            if batch < PRUNE_BATCH:
                return deleted

    # -- live workers ------------------------------------------------------------------------------------
    # Expiry on this machine's clock, as leases are: every process sharing the file shares the clock.

    async def register_worker(self, worker: WorkerInfo, ttl_ms: int) -> None:
        await self._run(self._register_worker_sync, worker, ttl_ms)

    def _register_worker_sync(self, worker: WorkerInfo, ttl_ms: int) -> None:
        now = time.time()
        with immediate_transaction(self._db) as db:
            db.execute("DELETE FROM lssm_workers WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO lssm_workers (id, info, started_at, expires_at) VALUES (?, ?, ?, ?)",
                (worker.id, worker.to_json(), worker.started_at, now + ttl_ms / 1000),
            )

    async def heartbeat_worker(self, worker: WorkerInfo, ttl_ms: int) -> bool:
        return await self._run(self._heartbeat_worker_sync, worker, ttl_ms)

    def _heartbeat_worker_sync(self, worker: WorkerInfo, ttl_ms: int) -> bool:
        now = time.time()
        with immediate_transaction(self._db) as db:
            changed = db.execute(
                "UPDATE lssm_workers SET info = ?, started_at = ?, expires_at = ? WHERE id = ? AND expires_at > ?",
                (worker.to_json(), worker.started_at, now + ttl_ms / 1000, worker.id, now),
            ).rowcount
        return changed == 1

    async def unregister_worker(self, worker_id: str) -> None:
        await self._run(self._unregister_worker_sync, worker_id)

    def _unregister_worker_sync(self, worker_id: str) -> None:
        with immediate_transaction(self._db) as db:
            db.execute("DELETE FROM lssm_workers WHERE id = ?", (worker_id,))

    async def list_workers(self) -> list[WorkerInfo]:
        return await self._run(self._list_workers_sync)

    def _list_workers_sync(self) -> list[WorkerInfo]:
        rows = self._db.execute(
            "SELECT id, info FROM lssm_workers WHERE expires_at > ? ORDER BY started_at, id", (time.time(),)
        ).fetchall()
        workers = []
        for worker_id, info in rows:
            try:
                workers.append(WorkerInfo.from_json(info))
            except ValueError as error:  # written by something else: skipped, with a warning
                log.warning("the record of worker %r is unreadable: %s", worker_id, error)
        return workers

    # -- retention ---------------------------------------------------------------------------------------

    async def prune(self) -> int:
        """Delete completed jobs past ``completed_retention`` now (workers also do it every
        ``prune_interval``). :returns: how many were deleted."""
        return await self._run(self._prune_sync, time.time())

    def _prune_sync(self, now: float) -> int:
        self._next_prune = now + self.prune_interval
        expired, cutoff = self._expired_completed(now)
        deleted = 0
        while True:
            with immediate_transaction(self._db) as db:
                batch = db.execute(
                    f"DELETE FROM lssm_jobs WHERE rowid IN (SELECT rowid FROM lssm_jobs WHERE {expired} "
                    "LIMIT ?)",
                    (cutoff, PRUNE_BATCH),
                ).rowcount
            deleted += batch
            if batch < PRUNE_BATCH:
                return deleted


def _resolve_settles(
    batch: list[tuple[_Settle, asyncio.Future[bool | Exception]]],
    done: asyncio.Future[tuple[Any, list[bool | Exception] | Exception]],
) -> None:
    """Hand the outcomes of settles committed with a lease to their waiting futures."""
    outcomes: list[bool | Exception] | BaseException
    if done.cancelled():
        outcomes = asyncio.CancelledError()
    elif done.exception() is not None:
        outcomes = cast(BaseException, done.exception())
    else:
        outcomes = done.result()[1]
    for index, (_, future) in enumerate(batch):
        if future.done():
            continue
        if isinstance(outcomes, BaseException):
            future.set_exception(outcomes)
        else:
            future.set_result(outcomes[index])


@attrs.frozen(kw_only=True)
class _Settle:
    """One delivery's outcome, waiting for the next group commit."""

    kind: Literal["ack", "retry", "dead_letter", "release", "cancel"]
    job_id: str
    token: str
    run_at: float | None = None
    error: str | None = None
    reason: str | None = None
    traceback: str | None = None


@attrs.frozen(kw_only=True)
class _LeasedRow:
    """A job as one lease transaction returned it, with the token that proves the lease."""

    id: str
    queue: str
    attempts: int
    priority: int
    run_at: float
    created_at: float
    body: bytes
    token: str


_DEAD_KINDS: tuple[tuple[str, Kind], ...] = (
    ("id", "text"),
    ("type", "text"),
    ("queue", "text"),
    ("priority", "int"),
    ("run_at", "real"),
    ("created_at", "real"),
    ("dedupe_key", "text?"),
    ("attempts", "int"),
    ("reason", "text"),
    ("error", "text?"),
    ("traceback", "text?"),
    ("failed_at", "real"),
    ("body", "blob"),
)
#: Dead letters whose id column holds a BLOB (sqlite's order: every BLOB sorts after all TEXT).
_BLOB_ID = "id >= x''"


def _dead_letter(row: Sequence[Any]) -> DeadLetter:
    """A dead letter from its row, whatever its columns hold: a value of the wrong type is shown as best it
    can be, and the reason says which columns were changed."""
    wrong = problems(row, _DEAD_KINDS)
    reason = text_of(row[8])
    if wrong:
        reason = f"{reason} [stored record was changed: {'; '.join(wrong)}]"
    return DeadLetter(
        id=id_of(row[0]),
        type=text_of(row[1], "?"),
        queue=text_of(row[2], "default"),
        reason=reason,
        error=optional_text_of(row[9]),
        traceback=optional_text_of(row[10]),
        attempts=int_of(row[7]),
        failed_at=real_of(row[11], 0.0),
        body=blob_of(row[12]),
    )


def _dead_rowid(db: sqlite3.Connection, job_id: str) -> int | None:
    """The rowid of the dead letter ``job_id``: by its id, or (when none has it) among dead letters whose
    id was changed to a BLOB, by the text :func:`id_of` shows for it."""
    row = db.execute(
        "SELECT rowid FROM lssm_dead_letters WHERE id = CAST(? AS TEXT)", (id_param(job_id),)
    ).fetchone()
    if row is not None:
        return int(row[0])
    for rowid, stored in db.execute(f"SELECT rowid, id FROM lssm_dead_letters WHERE {_BLOB_ID}"):
        if blob_id_matches(stored, job_id):
            return int(rowid)
    return None


_JOB_KINDS: tuple[tuple[str, Kind], ...] = (("status", "text"), ("body", "blob"))


def _job_record(row: Sequence[Any], now: float) -> JobRecord:
    """A job's record from its ``lssm_jobs`` row (``_JOB_COLUMNS``).

    :raises SerializationError: its status or body cannot be read (a worker moves such a row to the dead
        letter queue); other columns of the wrong type are read as best they can be.
    """
    status = row[3]
    wrong = problems((status, row[11]), _JOB_KINDS)
    if not wrong and status not in _STATUSES:
        wrong = [f"unknown status {status!r}"]
    if wrong:
        raise SerializationError(
            f"the stored record of job {id_of(row[0])} is corrupt ({'; '.join(wrong)}); workers move it to "
            "the dead letter queue"
        )
    run_at = real_of(row[6], now)
    if status in ("scheduled", "pending"):
        status = _waiting_status(run_at, now)
    return JobRecord(
        id=id_of(row[0]),
        type=text_of(row[1], "?"),
        queue=text_of(row[2], "default"),
        status=JobStatus(status),
        attempts=int_of(row[4]),
        priority=int_of(row[5]),
        run_at=run_at,
        created_at=real_of(row[7], run_at),
        updated_at=real_of(row[8], run_at),
        dedupe_key=optional_text_of(row[9]),
        last_error=optional_text_of(row[10]),
        body=row[11],
        progress=optional_text_of(row[12]) if len(row) > 12 else None,
        cancel_requested=bool(row[13]) and status == "active" if len(row) > 13 else False,
    )


class _SqliteDelivery(Delivery):
    """A leased job. Settling with a lost lease (expired, then leased by another worker) changes nothing."""

    def __init__(self, backend: SqliteBackend, row: _LeasedRow, lease_ms: int) -> None:
        self._backend = backend
        self._token = row.token
        self.id = row.id
        self.attempt = row.attempts
        self.body = row.body
        self.queue = row.queue
        self.lease_ms = lease_ms

    def _lost(self, action: str) -> None:
        log.warning(
            "job %s: %s ignored, its lease had expired and the job may have been delivered again",
            self.id,
            action,
        )

    async def ack(self) -> None:
        if not await self._backend._settle(_Settle(kind="ack", job_id=self.id, token=self._token)):
            self._lost("ack")

    async def retry(self, *, run_at: float, error: str) -> None:
        settle = _Settle(kind="retry", job_id=self.id, token=self._token, run_at=run_at, error=error)
        if not await self._backend._settle(settle):
            self._lost("retry")

    async def dead_letter(self, *, reason: str, error: str | None, traceback: str | None) -> None:
        settle = _Settle(
            kind="dead_letter",
            job_id=self.id,
            token=self._token,
            reason=reason,
            error=error,
            traceback=traceback,
        )
        if not await self._backend._settle(settle):
            self._lost("dead-lettering")

    async def release(self) -> None:
        if not await self._backend._settle(_Settle(kind="release", job_id=self.id, token=self._token)):
            self._lost("release")

    async def extend(self, lease_ms: int) -> bool:
        return await self._backend._run(self._backend._extend_sync, self.id, self._token, lease_ms)

    async def cancel(self) -> None:
        if not await self._backend._settle(_Settle(kind="cancel", job_id=self.id, token=self._token)):
            self._lost("cancelling")
