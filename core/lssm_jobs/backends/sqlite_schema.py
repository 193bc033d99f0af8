"""Creating and upgrading the lssm-jobs tables in a sqlite file.

A new file gets the current schema rendered from the entity specs (:mod:`lssm_jobs.entities`), so the
specs are the real schema. A file created by an older version is upgraded in place, one recorded step at a
time, inside one ``BEGIN IMMEDIATE`` transaction: several processes opening the file at once agree, and a
failed upgrade leaves the file as it was.

Migration steps are frozen SQL, never rendered from the current specs: a step must keep producing what it
produced when it was written, whatever later versions change. A test checks that upgrading a version-1
file yields exactly the tables, columns and indexes (partial index predicates included) of a fresh file.
"""

from __future__ import annotations

import sqlite3
import time

import attrs

from lssm_jobs.backends.sqlite_connection import immediate_transaction
from lssm_jobs.entities import (
    JOBS_SCHEMA_VERSION,
    JOBS_TABLE,
    SCHEMA_VERSION_TABLE,
    compose_schema,
    jobs_schema_contribution,
    render_sql_statements,
)
from lssm_jobs.errors import LssmJobsError


class SchemaVersionError(LssmJobsError):
    """The database's schema cannot be used by this version of lssm-jobs (too new, or not ours)."""


@attrs.frozen(kw_only=True)
class Migration:
    """One upgrade step from ``from_version`` to ``from_version + 1``."""

    from_version: int
    description: str
    statements: tuple[str, ...]

    @property
    def to_version(self) -> int:
        return self.from_version + 1


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        from_version=1,
        description="finished_at and the retention index on lssm_jobs; scheduler state tables",
        statements=(
            'ALTER TABLE "lssm_jobs" ADD COLUMN "finished_at" REAL',
            # version 1 stamped updated_at when a job completed, so it is the best known finish time
            'UPDATE "lssm_jobs" SET "finished_at" = "updated_at" WHERE "status" = \'completed\'',
            'CREATE INDEX IF NOT EXISTS "lssm_jobs_retention_idx" ON "lssm_jobs" ("status", "finished_at")',
            """CREATE TABLE IF NOT EXISTS "lssm_schedules" (
    "name" TEXT NOT NULL,
    "last_tick" REAL,
    "next_tick" REAL,
    "paused" INTEGER NOT NULL DEFAULT 0,
    "updated_at" REAL NOT NULL,
    PRIMARY KEY ("name")
)""",
            """CREATE TABLE IF NOT EXISTS "lssm_schedule_claims" (
    "schedule" TEXT NOT NULL,
    "tick" REAL NOT NULL,
    "claimed_by" TEXT NOT NULL,
    "claimed_at" REAL NOT NULL,
    "completed_at" REAL,
    "attempts" INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY ("schedule", "tick"),
    CONSTRAINT "lssm_schedule_claims_schedule_fkey" FOREIGN KEY ("schedule")
        REFERENCES "lssm_schedules" ("name") ON DELETE CASCADE
)""",
            'CREATE INDEX IF NOT EXISTS "lssm_schedule_claims_state_idx" '
            'ON "lssm_schedule_claims" ("completed_at", "claimed_at")',
        ),
    ),
    Migration(
        from_version=2,
        description="cancel_requested and progress on lssm_jobs (job cancellation and progress)",
        statements=(
            'ALTER TABLE "lssm_jobs" ADD COLUMN "cancel_requested" INTEGER NOT NULL DEFAULT 0',
            'ALTER TABLE "lssm_jobs" ADD COLUMN "progress" TEXT',
        ),
    ),
    Migration(
        from_version=3,
        description="lssm_workers: live workers and their heartbeats",
        statements=(
            """CREATE TABLE IF NOT EXISTS "lssm_workers" (
    "id" TEXT NOT NULL,
    "info" TEXT NOT NULL,
    "started_at" REAL NOT NULL,
    "expires_at" REAL NOT NULL,
    PRIMARY KEY ("id")
)""",
            'CREATE INDEX IF NOT EXISTS "lssm_workers_expiry_idx" ON "lssm_workers" ("expires_at")',
        ),
    ),
    Migration(
        from_version=4,
        description="lssm_results: results and final failures of jobs with a result type",
        statements=(
            """CREATE TABLE IF NOT EXISTS "lssm_results" (
    "job_id" TEXT NOT NULL,
    "job_type" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "value" BLOB,
    "error" TEXT,
    "reason" TEXT,
    "finished_at" REAL NOT NULL,
    "expires_at" REAL NOT NULL,
    PRIMARY KEY ("job_id")
)""",
            'CREATE INDEX IF NOT EXISTS "lssm_results_expires_at_idx" ON "lssm_results" ("expires_at")',
        ),
    ),
    Migration(
        from_version=5,
        description="partial due, lease expiry, dedupe and retention indexes on lssm_jobs (faster writes)",
        statements=(
            'DROP INDEX IF EXISTS "lssm_jobs_due_idx"',
            'DROP INDEX IF EXISTS "lssm_jobs_lease_expiry_idx"',
            'DROP INDEX IF EXISTS "lssm_jobs_dedupe_idx"',
            'DROP INDEX IF EXISTS "lssm_jobs_retention_idx"',
            'CREATE INDEX IF NOT EXISTS "lssm_jobs_due_idx" ON "lssm_jobs" ("status", "run_at") '
            'WHERE "status" = \'scheduled\'',
            'CREATE INDEX IF NOT EXISTS "lssm_jobs_lease_expiry_idx" ON "lssm_jobs" ("status", "lease_until") '
            'WHERE "status" = \'active\'',
            'CREATE INDEX IF NOT EXISTS "lssm_jobs_dedupe_idx" ON "lssm_jobs" ("dedupe_key") '
            'WHERE "dedupe_key" IS NOT NULL',
            'CREATE INDEX IF NOT EXISTS "lssm_jobs_retention_idx" ON "lssm_jobs" ("status", "finished_at") '
            'WHERE "status" IN (\'completed\', \'cancelled\')',
        ),
    ),
)

assert [m.from_version for m in MIGRATIONS] == list(range(1, JOBS_SCHEMA_VERSION)), (
    "every schema version below the current one needs exactly one migration step"
)


def current_statements() -> list[str]:
    """The DDL of the current schema for sqlite, rendered from the entity specs."""
    return render_sql_statements(compose_schema({"modules": [jobs_schema_contribution]}), "sqlite")


def _tables(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


def schema_version(connection: sqlite3.Connection) -> int | None:
    """The schema version recorded in the database, or None for a database without lssm-jobs tables."""
    if SCHEMA_VERSION_TABLE not in _tables(connection):
        return None
    row = connection.execute(f'SELECT max("version") FROM "{SCHEMA_VERSION_TABLE}"').fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def _record(connection: sqlite3.Connection, version: int, description: str) -> None:
    connection.execute(
        f'INSERT INTO "{SCHEMA_VERSION_TABLE}" ("version", "applied_at", "description") VALUES (?, ?, ?)',
        (version, time.time(), description),
    )


def ensure_schema(connection: sqlite3.Connection) -> int:
    """Create the lssm-jobs tables, or upgrade them to :data:`JOBS_SCHEMA_VERSION`; safe to call from
    several processes at once.

    :returns: the version the database had before (0 for a new database).
    :raises SchemaVersionError: the database was written by a newer lssm-jobs, or has an ``lssm_jobs``
        table but no recorded version (something else made it).
    """
    with immediate_transaction(connection):
        found = schema_version(connection)
        if found is None:
            if JOBS_TABLE in _tables(connection):
                raise SchemaVersionError(
                    f"the database has a {JOBS_TABLE!r} table but no {SCHEMA_VERSION_TABLE!r} table, so it "
                    "was not created by lssm-jobs; use another file"
                )
            for statement in current_statements():
                connection.execute(statement)
            _record(connection, JOBS_SCHEMA_VERSION, "created")
            return 0
        if found > JOBS_SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database has lssm-jobs schema version {found}, newer than the version "
                f"{JOBS_SCHEMA_VERSION} this lssm-jobs knows; upgrade lssm-jobs (there are no downgrades)"
            )
        for migration in MIGRATIONS:
            if migration.from_version < found:
                continue
            for statement in migration.statements:
                connection.execute(statement)
            _record(connection, migration.to_version, migration.description)
        return found
