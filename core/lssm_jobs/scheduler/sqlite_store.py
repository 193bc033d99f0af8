"""The sqlite scheduler store: schedule state and tick claims in a sqlite file, shared by every scheduler
process that opens the same file (the sqlite queue backend's file by default).

Tables ``lssm_schedules`` and ``lssm_schedule_claims`` are the ones of the entity spec
(:mod:`lssm_jobs.entities.jobs_schema`); the file's schema is created or upgraded exactly as the sqlite queue
backend does it (:func:`lssm_jobs.backends.sqlite_schema.ensure_schema`), so a scheduler and a queue can
open one file in any order. A claim is one ``BEGIN IMMEDIATE``
transaction: check the schedule (exists, not paused, ``tick > last_tick``), insert the unfinished claim
(primary key ``(schedule, tick)``), move ``last_tick``; sqlite's write lock makes it exclusive across
processes. Renewals, completions and take-overs are single conditional ``UPDATE`` statements, atomic by
themselves; the index on ``(completed_at, claimed_at)`` serves the unfinished-claims scan and pruning.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, TypeVar

from lssm_jobs.backends.sqlite_connection import Synchronous, immediate_transaction
from lssm_jobs.backends.sqlite_thread import ThreadedSqliteStore
from lssm_jobs.entities import SCHEDULE_CLAIMS_TABLE, SCHEDULES_TABLE
from lssm_jobs.scheduler.stores import SchedulerStore, ScheduleState, TickClaim

T = TypeVar("T")


_SELECT_STATE = f'SELECT "name", "last_tick", "next_tick", "paused", "updated_at" FROM "{SCHEDULES_TABLE}"'
_SELECT_CLAIM = (
    'SELECT "schedule", "tick", "claimed_by", "claimed_at", "completed_at", "attempts" '
    f'FROM "{SCHEDULE_CLAIMS_TABLE}"'
)


def _state(row: tuple[Any, ...]) -> ScheduleState:
    return ScheduleState(
        name=row[0], last_tick=row[1], next_tick=row[2], paused=bool(row[3]), updated_at=row[4]
    )


def _claim(row: tuple[Any, ...]) -> TickClaim:
    return TickClaim(
        schedule=row[0],
        tick=row[1],
        claimed_by=row[2],
        claimed_at=row[3],
        completed_at=row[4],
        attempts=row[5],
    )


class SqliteSchedulerStore(ThreadedSqliteStore, SchedulerStore):
    """A :class:`SchedulerStore` in a sqlite file (WAL mode), safe across processes on one machine.

    :param path: the database file; the sqlite queue's own file is the natural choice.
    :param busy_timeout: seconds to wait for another process's write lock before giving up.
    :param synchronous: ``"normal"`` (survives process crashes) or ``"full"`` (also power loss).
    """

    name = "sqlite"

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0, synchronous: Synchronous = "normal"
    ) -> None:
        super().__init__(path, busy_timeout=busy_timeout, synchronous=synchronous, what="scheduler store")

    # -- the contract -----------------------------------------------------------------------------------------

    async def ensure(self, name: str, *, now: float) -> ScheduleState:
        def run(db: sqlite3.Connection) -> ScheduleState:
            with immediate_transaction(db):
                db.execute(
                    f'INSERT INTO "{SCHEDULES_TABLE}" ("name", "last_tick", "next_tick", "paused", "updated_at") '
                    'VALUES (?, ?, NULL, 0, ?) ON CONFLICT ("name") DO NOTHING',
                    (name, now, now),
                )
                row = db.execute(f'{_SELECT_STATE} WHERE "name" = ?', (name,)).fetchone()
            return _state(row)

        return await self._call(run)

    async def get(self, name: str) -> ScheduleState | None:
        def run(db: sqlite3.Connection) -> ScheduleState | None:
            row = db.execute(f'{_SELECT_STATE} WHERE "name" = ?', (name,)).fetchone()
            return None if row is None else _state(row)

        return await self._call(run)

    async def states(self) -> list[ScheduleState]:
        def run(db: sqlite3.Connection) -> list[ScheduleState]:
            return [_state(row) for row in db.execute(f'{_SELECT_STATE} ORDER BY "name"')]

        return await self._call(run)

    async def claim(self, name: str, tick: float, *, owner: str, now: float, next_tick: float | None) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            with immediate_transaction(db):
                row = db.execute(
                    f'SELECT "last_tick", "paused" FROM "{SCHEDULES_TABLE}" WHERE "name" = ?', (name,)
                ).fetchone()
                if row is None or row[1] or (row[0] is not None and tick <= row[0]):
                    return False
                inserted = db.execute(
                    f'INSERT INTO "{SCHEDULE_CLAIMS_TABLE}" ("schedule", "tick", "claimed_by", "claimed_at") '
                    'VALUES (?, ?, ?, ?) ON CONFLICT ("schedule", "tick") DO NOTHING',
                    (name, tick, owner, now),
                ).rowcount
                if inserted != 1:
                    return False
                db.execute(
                    f'UPDATE "{SCHEDULES_TABLE}" SET "last_tick" = ?, "next_tick" = ?, "updated_at" = ? '
                    'WHERE "name" = ?',
                    (tick, next_tick, now, name),
                )
            return True

        return await self._call(run)

    async def renew(self, name: str, tick: float, *, owner: str, now: float) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            renewed: int = db.execute(
                f'UPDATE "{SCHEDULE_CLAIMS_TABLE}" SET "claimed_at" = ? WHERE "schedule" = ? AND "tick" = ? '
                'AND "claimed_by" = ? AND "completed_at" IS NULL',
                (now, name, tick, owner),
            ).rowcount
            return renewed == 1

        return await self._call(run)

    async def complete(self, name: str, tick: float, *, owner: str, now: float) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            with immediate_transaction(db):
                row = db.execute(
                    f'SELECT "claimed_by" FROM "{SCHEDULE_CLAIMS_TABLE}" '
                    'WHERE "schedule" = ? AND "tick" = ? AND "completed_at" IS NULL',
                    (name, tick),
                ).fetchone()
                if row is None:
                    return False
                db.execute(
                    f'UPDATE "{SCHEDULE_CLAIMS_TABLE}" SET "completed_at" = ? WHERE "schedule" = ? AND "tick" = ?',
                    (now, name, tick),
                )
            return bool(row[0] == owner)

        return await self._call(run)

    async def unfinished_claims(self, *, limit: int = 100) -> list[TickClaim]:
        def run(db: sqlite3.Connection) -> list[TickClaim]:
            rows = db.execute(
                f'{_SELECT_CLAIM} WHERE "completed_at" IS NULL ORDER BY "claimed_at", "schedule", "tick" LIMIT ?',
                (limit,),
            ).fetchall()
            return [_claim(row) for row in rows]

        return await self._call(run)

    async def take_over(self, name: str, tick: float, *, owner: str, now: float, stale_before: float) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            taken: int = db.execute(
                f'UPDATE "{SCHEDULE_CLAIMS_TABLE}" SET "claimed_by" = ?, "claimed_at" = ?, '
                '"attempts" = "attempts" + 1 '
                'WHERE "schedule" = ? AND "tick" = ? AND "completed_at" IS NULL AND "claimed_at" <= ? '
                f'AND EXISTS (SELECT 1 FROM "{SCHEDULES_TABLE}" WHERE "name" = ? AND NOT "paused")',
                (owner, now, name, tick, stale_before, name),
            ).rowcount
            return taken == 1

        return await self._call(run)

    async def advance(self, name: str, tick: float, *, now: float, next_tick: float | None) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(
                f'UPDATE "{SCHEDULES_TABLE}" SET "last_tick" = max(coalesce("last_tick", ?), ?), '
                '"next_tick" = ?, "updated_at" = ? WHERE "name" = ?',
                (tick, tick, next_tick, now, name),
            )

        await self._call(run)

    async def set_paused(self, name: str, paused: bool, *, now: float) -> ScheduleState | None:
        def run(db: sqlite3.Connection) -> ScheduleState | None:
            with immediate_transaction(db):
                if paused:
                    db.execute(
                        f'UPDATE "{SCHEDULES_TABLE}" SET "paused" = 1, "updated_at" = ? WHERE "name" = ?',
                        (now, name),
                    )
                else:
                    db.execute(
                        f'UPDATE "{SCHEDULES_TABLE}" SET "paused" = 0, '
                        '"last_tick" = max(coalesce("last_tick", ?), ?), "updated_at" = ? WHERE "name" = ?',
                        (now, now, now, name),
                    )
                row = db.execute(f'{_SELECT_STATE} WHERE "name" = ?', (name,)).fetchone()
            return None if row is None else _state(row)

        return await self._call(run)

    async def delete(self, name: str) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            with immediate_transaction(db):
                db.execute(f'DELETE FROM "{SCHEDULE_CLAIMS_TABLE}" WHERE "schedule" = ?', (name,))
                deleted: int = db.execute(
                    f'DELETE FROM "{SCHEDULES_TABLE}" WHERE "name" = ?', (name,)
                ).rowcount
            return deleted > 0

        return await self._call(run)

    async def claims(self, name: str, *, limit: int = 100) -> list[TickClaim]:
        def run(db: sqlite3.Connection) -> list[TickClaim]:
            rows = db.execute(
                f'{_SELECT_CLAIM} WHERE "schedule" = ? ORDER BY "tick" DESC LIMIT ?', (name, limit)
            ).fetchall()
            return [_claim(row) for row in rows]

        return await self._call(run)

    async def prune_claims(self, *, before: float) -> int:
        def run(db: sqlite3.Connection) -> int:
            with immediate_transaction(db):
                # two statements, so each one reads the (completed_at, claimed_at) index
                finished: int = db.execute(
                    f'DELETE FROM "{SCHEDULE_CLAIMS_TABLE}" WHERE "completed_at" < ?', (before,)
                ).rowcount
                abandoned: int = db.execute(
                    f'DELETE FROM "{SCHEDULE_CLAIMS_TABLE}" WHERE "completed_at" IS NULL AND "claimed_at" < ?',
                    (before,),
                ).rowcount
            return finished + abandoned

        return await self._call(run)


def sqlite_store_factory(
    backend: Any = None, path: str | os.PathLike[str] | None = None, **options: Any
) -> SqliteSchedulerStore:
    """SchedulerStoreSpec factory: the file given as ``path``, else the sqlite queue backend's own file."""
    if path is None:
        path = getattr(backend, "path", None)
        if path is None:
            raise ValueError(
                "the sqlite scheduler store needs path= (or a sqlite queue whose file it shares)"
            )
        options.setdefault("busy_timeout", max(getattr(backend, "busy_timeout", 10.0), 10.0))
        options.setdefault("synchronous", getattr(backend, "synchronous", "normal"))
    return SqliteSchedulerStore(path, **options)
