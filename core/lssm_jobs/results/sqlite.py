"""The sqlite result store: table ``lssm_results`` (the entity spec's, see
:mod:`lssm_jobs.entities.jobs_schema`) in a sqlite file, the sqlite queue's own file by default, so a worker
and the processes waiting for its results share it.

The file's schema is created or upgraded as the sqlite queue backend does it
(:func:`lssm_jobs.backends.sqlite_schema.ensure_schema`). sqlite cannot notify another process, so
:meth:`~lssm_jobs.results.base.ResultStore.wait` is the contract's backing-off poll (an indexed primary-key
read every 10 to 250 ms). Expired rows are deleted by :meth:`SqliteResultStore.prune`, which the store runs
itself at most once a minute after a write.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from lssm_jobs.backends.sqlite_connection import Synchronous, connect, immediate_transaction
from lssm_jobs.backends.sqlite_schema import ensure_schema
from lssm_jobs.entities import RESULTS_TABLE
from lssm_jobs.results.base import ResultStore, StoredResult

T = TypeVar("T")

#: Seconds between the prunes a store runs after its writes.
PRUNE_INTERVAL = 60.0

_COLUMNS = '"job_id", "job_type", "status", "value", "error", "reason", "finished_at", "expires_at"'


def _row(row: tuple[Any, ...]) -> StoredResult:
    return StoredResult(
        job_id=row[0],
        job_type=row[1],
        status=row[2],
        value=None if row[3] is None else bytes(row[3]),
        error=row[4],
        reason=row[5],
        finished_at=row[6],
        expires_at=row[7],
    )


class SqliteResultStore(ResultStore):
    """A :class:`ResultStore` in a sqlite file (WAL mode), shared by processes on one machine.

    :param path: the database file; the sqlite queue's own file is the natural choice.
    :param busy_timeout: seconds to wait for another process's write lock before giving up.
    :param synchronous: ``"normal"`` (survives process crashes) or ``"full"`` (also power loss).
    """

    name = "sqlite"

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0, synchronous: Synchronous = "normal"
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.synchronous: Synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._open_lock = threading.Lock()
        self._last_prune = 0.0

    # -- plumbing: one connection, used from one thread ------------------------------------------------------

    async def _call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            await self.open()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._run, function))

    def _run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            raise ConnectionError(f"result store {self.path} is closed")
        try:
            return function(self._connection)
        except sqlite3.OperationalError as error:
            if self._connection.in_transaction:
                self._connection.rollback()
            raise ConnectionError(f"result store {self.path}: {error}") from error
        except BaseException:
            if self._connection.in_transaction:
                self._connection.rollback()
            raise

    def _connect(self) -> None:
        connection = connect(self.path, busy_timeout=self.busy_timeout, synchronous=self.synchronous)
        try:
            ensure_schema(connection)
        except sqlite3.OperationalError as error:
            connection.close()
            raise ConnectionError(f"cannot prepare result store {self.path}: {error}") from error
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    async def open(self) -> None:
        with self._open_lock:
            if self._executor is not None:
                return
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lssm-results-sqlite")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def disconnect() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, disconnect)
        executor.shutdown(wait=True)

    # -- the contract -----------------------------------------------------------------------------------------

    async def put(self, result: StoredResult) -> None:
        prune_before = None
        if result.finished_at - self._last_prune >= PRUNE_INTERVAL:
            self._last_prune = result.finished_at
            prune_before = result.finished_at

        def run(db: sqlite3.Connection) -> None:
            with immediate_transaction(db):
                db.execute(
                    f'INSERT OR REPLACE INTO "{RESULTS_TABLE}" ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                    (
                        result.job_id,
                        result.job_type,
                        result.status,
                        result.value,
                        result.error,
                        result.reason,
                        result.finished_at,
                        result.expires_at,
                    ),
                )
                if prune_before is not None:
                    db.execute(f'DELETE FROM "{RESULTS_TABLE}" WHERE "expires_at" <= ?', (prune_before,))

        await self._call(run)

    async def get(self, job_id: str, *, now: float) -> StoredResult | None:
        def run(db: sqlite3.Connection) -> StoredResult | None:
            row = db.execute(
                f'SELECT {_COLUMNS} FROM "{RESULTS_TABLE}" WHERE "job_id" = ? AND "expires_at" > ?',
                (job_id, now),
            ).fetchone()
            return None if row is None else _row(row)

        return await self._call(run)

    async def delete(self, job_id: str) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            with immediate_transaction(db):
                deleted: int = db.execute(
                    f'DELETE FROM "{RESULTS_TABLE}" WHERE "job_id" = ?', (job_id,)
                ).rowcount
            return deleted > 0

        return await self._call(run)

    async def prune(self, *, now: float) -> int:
        def run(db: sqlite3.Connection) -> int:
            with immediate_transaction(db):
                deleted: int = db.execute(
                    f'DELETE FROM "{RESULTS_TABLE}" WHERE "expires_at" <= ?', (now,)
                ).rowcount
            return deleted

        return await self._call(run)


def sqlite_result_store_factory(
    backend: Any = None, path: str | os.PathLike[str] | None = None, url: str | None = None, **options: Any
) -> SqliteResultStore:
    """ResultStoreSpec factory: the file given as ``path`` (or ``url``), else the sqlite queue backend's own
    file.

    :raises ValueError: no file given and no sqlite queue to share one with, or both path and url.
    """
    if path is not None and url is not None:
        raise ValueError("the sqlite result store takes path= or url=, not both")
    if url is not None:
        from lssm_jobs.backends.sqlite_connection import parse_sqlite_url

        path = parse_sqlite_url(url)
    if path is None:
        path = getattr(backend, "path", None)
        if path is None:
            raise ValueError("the sqlite result store needs path= (or a sqlite queue whose file it shares)")
        options.setdefault("busy_timeout", max(getattr(backend, "busy_timeout", 10.0), 10.0))
        options.setdefault("synchronous", getattr(backend, "synchronous", "normal"))
    return SqliteResultStore(path, **options)


__all__ = ["PRUNE_INTERVAL", "SqliteResultStore", "sqlite_result_store_factory"]
