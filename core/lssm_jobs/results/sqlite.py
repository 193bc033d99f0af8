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

import os
import sqlite3
from typing import Any, TypeVar

from lssm_jobs.backends.sqlite_connection import Synchronous, immediate_transaction
from lssm_jobs.backends.sqlite_thread import ThreadedSqliteStore
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


class SqliteResultStore(ThreadedSqliteStore, ResultStore):
    """A :class:`ResultStore` in a sqlite file (WAL mode), shared by processes on one machine.

    :param path: the database file; the sqlite queue's own file is the natural choice.
    :param busy_timeout: seconds to wait for another process's write lock before giving up.
    :param synchronous: ``"normal"`` (survives process crashes) or ``"full"`` (also power loss).
    """

    name = "sqlite"

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0, synchronous: Synchronous = "normal"
    ) -> None:
        super().__init__(path, busy_timeout=busy_timeout, synchronous=synchronous, what="result store")
        self._last_prune = 0.0

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
