"""A small store on an lssm-jobs sqlite file: one connection, used from one thread of its own.

The scheduler store and the result store keep little state and are called from the event loop: each runs
its statements on a single-thread executor that owns the connection (sqlite connections belong to one
thread), so callers never block the loop and never share a connection.
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
from typing import TypeVar

from lssm_jobs.backends.sqlite_connection import Synchronous, connect
from lssm_jobs.backends.sqlite_schema import ensure_schema

T = TypeVar("T")


class ThreadedSqliteStore:
    """The connection plumbing of a store on a sqlite file: :meth:`open`, :meth:`close` and :meth:`_call`.

    :param path: the database file (the lssm-jobs schema is created or upgraded on open).
    :param busy_timeout: seconds to wait for another process's write lock before giving up.
    :param synchronous: ``"normal"`` (survives process crashes) or ``"full"`` (also power loss).
    :param what: the store in messages and thread names, e.g. ``"result store"``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float,
        synchronous: Synchronous,
        what: str,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.synchronous: Synchronous = synchronous
        self._what = what
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._open_lock = threading.Lock()

    async def _call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function(connection)`` on the store's thread (opening the store first if needed).

        :raises ConnectionError: the database is locked or busy beyond ``busy_timeout``, or the store is
            closed (the transaction, if any, was rolled back).
        """
        if self._executor is None:
            await self.open()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._run, function))

    def _run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            raise ConnectionError(f"{self._what} {self.path} is closed")
        try:
            return function(self._connection)
        except sqlite3.OperationalError as error:
            if self._connection.in_transaction:
                self._connection.rollback()
            raise ConnectionError(f"{self._what} {self.path}: {error}") from error
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
            raise ConnectionError(f"cannot prepare {self._what} {self.path}: {error}") from error
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    async def open(self) -> None:
        """Start the store's thread and connect (the schema is created or upgraded); a no-op when open.

        :raises ConnectionError: the file cannot be prepared (locked beyond ``busy_timeout``).
        """
        with self._open_lock:
            if self._executor is not None:
                return
            thread_name = "lssm-" + self._what.replace(" ", "-") + "-sqlite"
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        """Close the connection and stop the thread; a no-op when not open."""
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
