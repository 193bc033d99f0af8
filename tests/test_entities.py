"""Entity specs: composing contributions, and rendering them as Prisma (checked by Prisma's own parser) and as
SQL DDL (applied to a real sqlite file and a real PostgreSQL)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lssm_jobs.entities import (
    JOBS_SCHEMA_VERSION,
    Entity,
    Field,
    FieldIn,
    FieldNotNull,
    FieldType,
    Index,
    Relation,
    Schema,
    SchemaContribution,
    SchemaError,
    compose_schema,
    jobs_schema_contribution,
    render_prisma,
    render_sql,
    render_sql_statements,
)

PRISMA_DIR = Path(__file__).parent / "prisma"
# .ci/run starts a server of its own on another port (PGPORT) where none runs on 5432.
PG = {"host": "127.0.0.1", "port": os.environ.get("PGPORT", "5432"), "user": "postgres", "dbname": "test"}

# An application module that adds its own table next to lssm-jobs', pointing at a job.
invoice_entity = Entity(
    name="BillingInvoice",
    table="billing_invoices",
    doc="An invoice, rendered by a background job.",
    fields=(
        Field(name="id", type=FieldType.BIGINT, doc="invoice number"),
        Field(name="customer", type=FieldType.TEXT),
        Field(name="amount_cents", type=FieldType.BIGINT, default=0),
        Field(name="paid", type=FieldType.BOOLEAN, default=False),
        Field(name="note", type=FieldType.TEXT, nullable=True, default='it\'s "quoted"'),
        Field(name="render_job_id", type=FieldType.TEXT, nullable=True, doc="the job rendering it"),
        Field(name="pdf", type=FieldType.BYTES, nullable=True),
    ),
    primary_key=("id",),
    indexes=(
        Index(name="billing_invoices_customer_key", fields=("customer", "id"), unique=True),
        Index(name="billing_invoices_render_job_idx", fields=("render_job_id",)),
    ),
    relations=(
        Relation(
            name="render_job",
            fields=("render_job_id",),
            target="LssmJob",
            target_fields=("id",),
            back_name="invoices",
            on_delete="set null",
            constraint="billing_invoices_render_job_fkey",
        ),
    ),
)
billing_contribution = SchemaContribution(name="billing", entities=(invoice_entity,))


def jobs_schema() -> Schema:
    return compose_schema({"modules": [jobs_schema_contribution]})


def composed_schema() -> Schema:
    return compose_schema({"modules": [jobs_schema_contribution, billing_contribution]})


# -- the lssm-jobs contribution -------------------------------------------------------------------------


def test_jobs_contribution_describes_every_table() -> None:
    schema = jobs_schema()
    tables = {entity.table: entity for entity in schema.entities}
    assert set(tables) == {
        "lssm_jobs",
        "lssm_dead_letters",
        "lssm_schedules",
        "lssm_schedule_claims",
        "lssm_workers",
        "lssm_results",
        "lssm_schema_version",
    }
    assert all(entity.doc for entity in schema.entities)
    assert jobs_schema_contribution.version == JOBS_SCHEMA_VERSION == 6

    jobs = tables["lssm_jobs"]
    assert jobs.primary_key == ("id",)
    assert jobs.field("body").type is FieldType.BYTES
    assert jobs.field("run_at").type is FieldType.FLOAT
    assert jobs.field("dedupe_key").nullable and not jobs.field("queue").nullable
    indexes = {index.name: index for index in jobs.indexes}
    lease = indexes["lssm_jobs_lease_idx"]
    assert lease.fields[:4] == ("queue", "status", "priority", "run_at") and lease.descending == {"priority"}
    assert lease.where is None and indexes["lssm_jobs_lease_any_queue_idx"].where is None
    # a new pending job updates none of these
    assert indexes["lssm_jobs_due_idx"].where == FieldIn(field="status", values=("scheduled",))
    assert indexes["lssm_jobs_lease_expiry_idx"].where == FieldIn(field="status", values=("active",))
    assert indexes["lssm_jobs_retention_idx"].where == FieldIn(field="status", values=("completed", "cancelled"))
    assert indexes["lssm_jobs_dedupe_idx"].where == FieldNotNull(field="dedupe_key")

    claims = tables["lssm_schedule_claims"]
    assert claims.primary_key == ("schedule", "tick")  # one claim per (schedule, tick)
    assert claims.relations[0].target == "LssmSchedule" and claims.relations[0].on_delete == "cascade"


# -- SQL -------------------------------------------------------------------------------------------------


def _sqlite_layout(connection: sqlite3.Connection) -> dict[str, object]:
    """Tables -> columns (type, notnull, default, pk), indexes (columns, desc, unique), foreign keys."""
    layout: dict[str, object] = {}
    tables = [
        row[0]
        for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    for table in tables:
        columns = {
            row[1]: (row[2], row[3], row[4], row[5])
            for row in connection.execute(f'PRAGMA table_info("{table}")')
        }
        indexes = {}
        for row in connection.execute(f'PRAGMA index_list("{table}")'):
            name, unique, origin = row[1], row[2], row[3]
            info = [
                (col[2], col[3])
                for col in connection.execute(f'PRAGMA index_xinfo("{name}")')
                if col[5]  # key columns only
            ]
            indexes[name if origin == "c" else f"{origin}:{','.join(c for c, _ in info)}"] = (info, unique)
        keys = sorted(
            (row[2], row[3], row[4], row[6])
            for row in connection.execute(f'PRAGMA foreign_key_list("{table}")')
        )
        layout[table] = {"columns": columns, "indexes": indexes, "foreign_keys": keys}
    return layout


def test_sqlite_ddl_creates_the_spec_and_is_idempotent(tmp_path: Path) -> None:
    script = render_sql(composed_schema(), "sqlite")
    assert f"-- Generated by lssm-jobs for sqlite from: lssm_jobs v{JOBS_SCHEMA_VERSION}, billing v1" in script
    connection = sqlite3.connect(tmp_path / "schema.db")
    connection.executescript(script)
    connection.executescript(script)  # IF NOT EXISTS everywhere
    layout = _sqlite_layout(connection)
    jobs = layout["lssm_jobs"]
    assert isinstance(jobs, dict)
    assert jobs["columns"]["body"] == ("BLOB", 1, None, 0)
    assert jobs["columns"]["run_at"] == ("REAL", 1, None, 0)
    assert jobs["columns"]["status"] == ("TEXT", 1, "'pending'", 0)
    assert jobs["columns"]["dedupe_key"] == ("TEXT", 0, None, 0)
    assert jobs["indexes"]["lssm_jobs_lease_idx"] == (
        [("queue", 0), ("status", 0), ("priority", 1), ("run_at", 0), ("created_at", 0)],
        0,
    )
    invoices = layout["billing_invoices"]
    assert isinstance(invoices, dict)
    assert invoices["columns"]["paid"] == ("INTEGER", 1, "0", 0)
    assert invoices["columns"]["note"] == ("TEXT", 0, "'it''s \"quoted\"'", 0)
    assert invoices["indexes"]["billing_invoices_customer_key"][1] == 1
    assert invoices["foreign_keys"] == [("lssm_jobs", "render_job_id", "id", "SET NULL")]
    claims = layout["lssm_schedule_claims"]
    assert isinstance(claims, dict)
    assert claims["foreign_keys"] == [("lssm_schedules", "schedule", "name", "CASCADE")]


def test_sqlite_ddl_relations_and_keys_hold(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "schema.db", isolation_level=None)
    connection.execute("PRAGMA foreign_keys = ON")
    for statement in render_sql_statements(jobs_schema(), "sqlite"):
        connection.execute(statement)
    connection.execute("INSERT INTO lssm_schedules (name, updated_at) VALUES ('nightly', 1.0)")
    claim = (
        "INSERT INTO lssm_schedule_claims (schedule, tick, claimed_by, claimed_at) VALUES (?, 100.0, ?, 1.0)"
    )
    connection.execute(claim, ("nightly", "a"))
    with pytest.raises(sqlite3.IntegrityError):  # a tick is claimed once
        connection.execute(claim, ("nightly", "b"))
    with pytest.raises(sqlite3.IntegrityError):  # claims belong to a known schedule
        connection.execute(claim, ("unknown", "a"))
    connection.execute("DELETE FROM lssm_schedules WHERE name = 'nightly'")
    assert connection.execute("SELECT count(*) FROM lssm_schedule_claims").fetchone() == (0,)


def test_lease_query_reads_the_lease_index_in_order(tmp_path: Path) -> None:
    """The indexes exist for the backend's hot queries: leasing must not sort the table."""
    connection = sqlite3.connect(tmp_path / "schema.db")
    connection.executescript(render_sql(jobs_schema(), "sqlite"))

    def plan(sql: str) -> str:
        return " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}"))

    pick = "SELECT id FROM lssm_jobs WHERE status = 'pending'{} ORDER BY priority DESC, run_at, created_at LIMIT 9"
    one_queue = plan(pick.format(" AND queue IN ('a')"))
    assert "lssm_jobs_lease_idx" in one_queue and "TEMP B-TREE" not in one_queue, one_queue
    two_queues = plan(pick.format(" AND queue IN ('a', 'b')"))
    assert "TEMP B-TREE" not in two_queues, two_queues
    any_queue = plan(pick.format(""))
    assert "lssm_jobs_lease_any_queue_idx" in any_queue and "TEMP B-TREE" not in any_queue, any_queue
    # The partial indexes serve the queries that repeat their predicate (as the backend's do), covering them.
    due = plan("SELECT id FROM lssm_jobs WHERE status = 'scheduled' AND run_at <= 1")
    assert "INDEX lssm_jobs_due_idx (status=? AND run_at<?)" in due, due
    next_due = plan(
        "SELECT (SELECT min(run_at) FROM lssm_jobs WHERE status = 'scheduled'), "
        "(SELECT min(lease_until) FROM lssm_jobs WHERE status = 'active')"
    )
    assert "COVERING INDEX lssm_jobs_due_idx" in next_due, next_due
    assert "COVERING INDEX lssm_jobs_lease_expiry_idx" in next_due, next_due
    expired = plan("SELECT id FROM lssm_jobs WHERE status = 'active' AND lease_until <= 1")
    assert "INDEX lssm_jobs_lease_expiry_idx (status=? AND lease_until<?)" in expired, expired
    prune = plan(
        "SELECT rowid FROM lssm_jobs WHERE status IN ('completed', 'cancelled') AND finished_at <= 1 LIMIT 9"
    )
    assert "COVERING INDEX lssm_jobs_retention_idx (status=? AND finished_at<?)" in prune, prune
    dedupe = plan(
        "SELECT id FROM lssm_jobs WHERE dedupe_key = 'k' AND status IN ('scheduled', 'pending', 'active') LIMIT 1"
    )
    assert "INDEX lssm_jobs_dedupe_idx (dedupe_key=?)" in dedupe, dedupe  # `=` implies IS NOT NULL
    # A query that does not imply the predicate cannot use a partial index: the status must be written as
    # the predicate is (one status of an IN predicate is not enough for sqlite).
    completed_only = plan("SELECT rowid FROM lssm_jobs WHERE status = 'completed' AND finished_at <= 1")
    assert "lssm_jobs_retention_idx" not in completed_only, completed_only


def test_postgresql_ddl_uses_postgres_types() -> None:
    script = render_sql(composed_schema(), "postgresql")
    assert '"body" BYTEA NOT NULL' in script
    assert '"run_at" DOUBLE PRECISION NOT NULL' in script
    assert '"id" BIGINT NOT NULL' in script
    assert '"paid" BOOLEAN NOT NULL DEFAULT FALSE' in script
    assert '"priority" DESC' in script
    assert 'CREATE UNIQUE INDEX IF NOT EXISTS "billing_invoices_customer_key"' in script
    assert (
        'CONSTRAINT "lssm_schedule_claims_schedule_fkey" FOREIGN KEY ("schedule") REFERENCES "lssm_schedules" '
        '("name") ON DELETE CASCADE'
    ) in script
    # referenced tables come first
    assert script.index('CREATE TABLE IF NOT EXISTS "lssm_jobs"') < script.index('"billing_invoices" (')
    assert script.index('"lssm_schedules" (') < script.index('"lssm_schedule_claims" (')


def test_the_results_table_renders_for_sql_and_prisma() -> None:
    postgres = render_sql(jobs_schema(), "postgresql")
    assert 'CREATE TABLE IF NOT EXISTS "lssm_results"' in postgres
    assert '"value" BYTEA' in postgres and '"expires_at" DOUBLE PRECISION NOT NULL' in postgres
    assert 'CREATE INDEX IF NOT EXISTS "lssm_results_expires_at_idx" ON "lssm_results" ("expires_at")' in postgres
    prisma = render_prisma(jobs_schema(), provider="postgresql")
    assert "model LssmResult {" in prisma and '@@map("lssm_results")' in prisma
    assert re.search(r'\n  jobId +String +@id +@map\("job_id"\)\n', prisma)
    assert re.search(r'\n  value +Bytes\? +@map\("value"\)\n', prisma) or re.search(r"\n  value +Bytes\?", prisma)


def test_unknown_dialect_is_rejected() -> None:
    with pytest.raises(SchemaError, match="unknown SQL dialect 'mysql'"):
        render_sql(jobs_schema(), "mysql")  # type: ignore[arg-type]


# An entity with a partial index of each kind: one value, several values (booleans too), IS NOT NULL.
partial_entity = Entity(
    name="Parcel",
    table="parcels",
    doc="A parcel, with partial indexes.",
    fields=(
        Field(name="id", type=FieldType.TEXT),
        Field(name="state", type=FieldType.TEXT),
        Field(name="fragile", type=FieldType.BOOLEAN, default=False),
        Field(name="due_at", type=FieldType.FLOAT),
        Field(name="tracking", type=FieldType.TEXT, nullable=True),
    ),
    primary_key=("id",),
    indexes=(
        Index(name="parcels_due_idx", fields=("state", "due_at"), where=FieldIn(field="state", values="sent")),
        Index(
            name="parcels_done_idx",
            fields=("due_at",),
            where=FieldIn(field="state", values=("delivered", "lost")),
        ),
        Index(name="parcels_fragile_idx", fields=("due_at",), where=FieldIn(field="fragile", values=True)),
        Index(
            name="parcels_tracking_key",
            fields=("tracking",),
            unique=True,
            where=FieldNotNull(field="tracking"),
        ),
    ),
)
partial_contribution = SchemaContribution(name="parcels", entities=(partial_entity,))


def partial_schema() -> Schema:
    return compose_schema({"modules": [partial_contribution]})


def test_partial_indexes_render_their_predicate_per_dialect() -> None:
    sqlite_script = render_sql(partial_schema(), "sqlite")
    assert (
        'CREATE INDEX IF NOT EXISTS "parcels_due_idx" ON "parcels" ("state", "due_at") WHERE "state" = \'sent\';'
        in sqlite_script
    )
    assert '("due_at") WHERE "state" IN (\'delivered\', \'lost\');' in sqlite_script
    assert '"parcels_fragile_idx" ON "parcels" ("due_at") WHERE "fragile" = 1;' in sqlite_script
    assert (
        'CREATE UNIQUE INDEX IF NOT EXISTS "parcels_tracking_key" ON "parcels" ("tracking") '
        'WHERE "tracking" IS NOT NULL;'
    ) in sqlite_script
    postgres = render_sql(partial_schema(), "postgresql")
    assert '"parcels_fragile_idx" ON "parcels" ("due_at") WHERE "fragile" = TRUE;' in postgres
    assert '("due_at") WHERE "state" IN (\'delivered\', \'lost\');' in postgres
    jobs = render_sql(jobs_schema(), "postgresql")
    assert (
        'CREATE INDEX IF NOT EXISTS "lssm_jobs_lease_expiry_idx" ON "lssm_jobs" ("status", "lease_until") '
        'WHERE "status" = \'active\';'
    ) in jobs
    assert '("status", "finished_at") WHERE "status" IN (\'completed\', \'cancelled\');' in jobs
    assert '("dedupe_key") WHERE "dedupe_key" IS NOT NULL;' in jobs
    # a full index renders as before, without WHERE
    assert '"lssm_jobs_lease_idx" ON "lssm_jobs" ("queue", "status", "priority" DESC, "run_at", "created_at");' in jobs


def test_partial_indexes_apply_to_sqlite_and_serve_only_queries_implying_them(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "schema.db", isolation_level=None)
    connection.executescript(render_sql(partial_schema(), "sqlite"))
    partial = {row[1]: row[4] for row in connection.execute('PRAGMA index_list("parcels")')}
    assert partial == {
        "sqlite_autoindex_parcels_1": 0,  # the primary key
        "parcels_due_idx": 1,
        "parcels_done_idx": 1,
        "parcels_fragile_idx": 1,
        "parcels_tracking_key": 1,
    }
    insert = "INSERT INTO parcels (id, state, fragile, due_at, tracking) VALUES (?, ?, ?, 1.0, ?)"
    for row in [("a", "sent", 1, None), ("b", "packed", 0, None), ("c", "lost", 0, "T1"), ("d", "delivered", 0, None)]:
        connection.execute(insert, row)

    def count(index: str, where: str) -> object:  # INDEXED BY fails when the index cannot serve the query
        return connection.execute(f"SELECT count(*) FROM parcels INDEXED BY {index} WHERE {where}").fetchone()[0]

    assert count("parcels_due_idx", "state = 'sent' AND due_at <= 2") == 1
    assert count("parcels_done_idx", "state IN ('delivered', 'lost') AND due_at <= 2") == 2
    assert count("parcels_fragile_idx", "fragile = 1 AND due_at <= 2") == 1
    assert count("parcels_tracking_key", "tracking = 'T1'") == 1  # `=` implies IS NOT NULL
    with pytest.raises(sqlite3.OperationalError, match="no query solution"):
        count("parcels_done_idx", "state = 'lost' AND due_at <= 2")  # one value of the IN is not enough
    # the partial unique index allows any number of NULLs, and one row per non-NULL value
    connection.execute(insert, ("e", "packed", 0, None))
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute(insert, ("f", "packed", 0, "T1"))


# -- PostgreSQL ------------------------------------------------------------------------------------------


def _psql(sql: str) -> str:
    command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    command += ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-d", PG["dbname"]]
    result = subprocess.run(
        command,
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema (namespace) in database 'test', dropped afterwards."""
    if shutil.which("psql") is None:
        pytest.skip("psql (postgresql-client) is not installed")
    try:
        _psql("SELECT 1")
    except (AssertionError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"PostgreSQL is not reachable on {PG['host']}:{PG['port']} as {PG['user']}: {error}")
    name = f"lssm_test_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        _psql(f'DROP SCHEMA "{name}" CASCADE')


def test_postgresql_ddl_applies_to_a_real_server(pg_schema: str) -> None:
    script = render_sql(composed_schema(), "postgresql")
    prelude = f'SET search_path TO "{pg_schema}";\n'
    _psql(prelude + script + script)  # twice: idempotent
    columns = _psql(
        "SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable "
        f"FROM information_schema.columns WHERE table_schema = '{pg_schema}'"
    ).splitlines()
    assert "lssm_jobs.body:bytea:NO" in columns
    assert "lssm_jobs.run_at:double precision:NO" in columns
    assert "lssm_jobs.dedupe_key:text:YES" in columns
    assert "lssm_schedules.paused:boolean:NO" in columns
    assert "billing_invoices.id:bigint:NO" in columns
    indexes = _psql(f"SELECT indexname FROM pg_indexes WHERE schemaname = '{pg_schema}'").split()
    for entity in composed_schema().entities:
        for index in entity.indexes:
            assert index.name in indexes
    lease_index = _psql(
        f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{pg_schema}' AND indexname = 'lssm_jobs_lease_idx'"
    )
    assert "priority DESC" in lease_index
    expiry_index = _psql(
        f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{pg_schema}' "
        "AND indexname = 'lssm_jobs_lease_expiry_idx'"
    )
    assert "(status, lease_until) WHERE (status = 'active'::text)" in expiry_index, expiry_index
    retention_index = _psql(
        f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{pg_schema}' AND indexname = 'lssm_jobs_retention_idx'"
    )
    assert "WHERE (status = ANY (ARRAY['completed'::text, 'cancelled'::text]))" in retention_index, retention_index
    # keys and relations behave as specified
    outcome = _psql(
        prelude
        + "INSERT INTO lssm_schedules (name, updated_at) VALUES ('nightly', 1);"
        + "INSERT INTO lssm_schedule_claims VALUES ('nightly', 100, 'a', 1);"
        + "INSERT INTO lssm_schedule_claims VALUES ('nightly', 100, 'b', 1) ON CONFLICT DO NOTHING;"
        + "SELECT count(*) FROM lssm_schedule_claims;"
        + "INSERT INTO lssm_jobs (id, type, run_at, created_at, updated_at, body) "
        + "VALUES ('j1', 't', 1, 1, 1, '\\x00ff'::bytea);"
        + "INSERT INTO billing_invoices (id, customer, render_job_id) VALUES (1, 'acme', 'j1');"
        + "DELETE FROM lssm_jobs WHERE id = 'j1';"
        + "SELECT coalesce(render_job_id, 'null') || ':' || note FROM billing_invoices;"
        + "DELETE FROM lssm_schedules;"
        + "SELECT count(*) FROM lssm_schedule_claims;"
    ).split("\n")
    assert [line for line in outcome if line] == ["1", 'null:it\'s "quoted"', "0"]


# -- Prisma ----------------------------------------------------------------------------------------------


def test_prisma_schema_maps_to_the_same_tables() -> None:
    text = render_prisma(composed_schema(), provider="postgresql")
    assert 'datasource db {\n  provider = "postgresql"\n}' in text
    assert 'generator client {\n  provider = "prisma-client-js"\n}' in text
    assert "url" not in text.split("generator")[0]  # Prisma 7 style by default
    assert "model LssmJob {" in text and '@@map("lssm_jobs")' in text
    assert re.search(r'\n  runAt +Float +@map\("run_at"\)\n', text)
    assert re.search(r"\n  id +String +@id\n", text)
    assert "@@id([schedule, tick])" in text
    assert (
        '@@index([queue, status, priority(sort: Desc), runAt, createdAt], map: "lssm_jobs_lease_idx")' in text
    )
    assert '@@unique([customer, id], map: "billing_invoices_customer_key")' in text
    assert '@default("it\'s \\"quoted\\"")' in text
    assert 'onDelete: SetNull, onUpdate: NoAction, map: "billing_invoices_render_job_fkey")' in text
    assert "invoices LssmJob" not in text and "BillingInvoice[]" in text
    # Prisma cannot say WHERE: a partial index is a full @@index there, with a comment saying how to fix it
    due = text.index('@@index([status, runAt], map: "lssm_jobs_due_idx")')
    comment = text[text.rindex("@@index", 0, due) : due]
    assert '// Partial in SQL: WHERE "status" = \'scheduled\'.' in comment
    assert "`prisma migrate dev --create-only`" in comment
    assert '@@index([dedupeKey], map: "lssm_jobs_dedupe_idx")' in text
    assert '// Partial in SQL: WHERE "dedupe_key" IS NOT NULL.' in text
    assert text.count("// Partial in SQL:") == 4
    parcels = render_prisma(partial_schema(), provider="sqlite")
    assert '// Partial in SQL: WHERE "fragile" = 1.' in parcels
    assert '@@unique([tracking], map: "parcels_tracking_key")' in parcels
    assert '// Partial in SQL: WHERE "fragile" = TRUE.' in render_prisma(partial_schema())
    with_url = render_prisma(jobs_schema(), provider="sqlite", url_env="DATABASE_URL", generator=None)
    assert 'url      = env("DATABASE_URL")' in with_url and "generator" not in with_url


@pytest.fixture(scope="session")
def prisma_validator() -> Path:
    """tests/prisma with its node_modules installed (``npm ci`` from the lockfile, once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run Prisma's schema parser (@prisma/prisma-schema-wasm)")
    if not (PRISMA_DIR / "node_modules" / "@prisma" / "prisma-schema-wasm").exists():
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PRISMA_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci in {PRISMA_DIR} failed: {result.stderr.strip()[-2000:]}")
    return PRISMA_DIR


def _prisma_validate(directory: Path, schema: str, major: int = 7) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(directory / "validate.js"), "--prisma", str(major)],
        input=schema,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("provider", ["postgresql", "sqlite"])
@pytest.mark.parametrize("modules", ["jobs", "jobs+billing", "parcels"])
def test_prisma_accepts_the_rendered_schema(prisma_validator: Path, provider: str, modules: str) -> None:
    schema = {"jobs": jobs_schema, "jobs+billing": composed_schema, "parcels": partial_schema}[modules]()
    text = render_prisma(schema, provider=provider)  # type: ignore[arg-type]
    result = _prisma_validate(prisma_validator, text)
    assert result.returncode == 0, f"Prisma 7 rejected the schema:\n{result.stderr}\n{text}"
    legacy = render_prisma(schema, provider=provider, url_env="DATABASE_URL")  # type: ignore[arg-type]
    result = _prisma_validate(prisma_validator, legacy, major=6)
    assert result.returncode == 0, f"Prisma 6 rejected the schema:\n{result.stderr}\n{legacy}"


def test_prisma_check_catches_errors(prisma_validator: Path) -> None:
    """The check is real: Prisma rejects a broken schema, naming the problem."""
    broken = re.sub(r"(\n  body +)Bytes", r"\1Blob", render_prisma(jobs_schema()))
    assert "Blob" in broken
    result = _prisma_validate(prisma_validator, broken)
    assert result.returncode == 1
    assert 'Type "Blob" is neither a built-in type' in result.stderr


# -- composition and spec errors -----------------------------------------------------------------------


def _entity(name: str = "Thing", table: str = "things", **overrides: object) -> Entity:
    spec: dict[str, object] = {
        "name": name,
        "table": table,
        "fields": (Field(name="id", type=FieldType.TEXT), Field(name="size", type=FieldType.INTEGER)),
        "primary_key": ("id",),
    }
    spec.update(overrides)
    return Entity(**spec)  # type: ignore[arg-type]


def test_composition_keeps_module_order_and_finds_entities() -> None:
    schema = composed_schema()
    assert [c.name for c in schema.contributions] == ["lssm_jobs", "billing"]
    assert schema.entity("BillingInvoice").table == "billing_invoices"
    assert [e.name for e in schema.in_dependency_order()][-1] == "BillingInvoice"


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (
            _entity(name="LssmJob"),
            "entity name 'LssmJob' is defined by both module 'lssm_jobs' and module 'other'",
        ),
        (_entity(table="lssm_jobs"), "table name 'lssm_jobs' is defined by both"),
        (
            _entity(indexes=(Index(name="lssm_jobs_dedupe_idx", fields=("size",)),)),
            "index name 'lssm_jobs_dedupe_idx' is defined by both",
        ),
    ],
)
def test_duplicate_names_across_modules_are_rejected(other: Entity, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        compose_schema(
            {"modules": [jobs_schema_contribution, SchemaContribution(name="other", entities=(other,))]}
        )


def _relation(**overrides: object) -> Relation:
    spec: dict[str, object] = {
        "name": "job",
        "fields": ("id",),
        "target": "LssmJob",
        "target_fields": ("id",),
        "back_name": "things",
        "constraint": "things_job_fkey",
    }
    spec.update(overrides)
    return Relation(**spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("relation", "message"),
    [
        (_relation(target="Missing"), "no module defines the target entity 'Missing'"),
        (_relation(target_fields=("queue",)), "are not the primary key or a unique index of 'LssmJob'"),
        (_relation(fields=("size",)), r"field 'size' \(integer\) cannot reference LssmJob.id \(text\)"),
        (_relation(back_name="status"), "back_name 'status' clashes with a field or relation of 'LssmJob'"),
    ],
)
def test_bad_relations_are_rejected(relation: Relation, message: str) -> None:
    module = SchemaContribution(name="other", entities=(_entity(relations=(relation,)),))
    with pytest.raises(SchemaError, match=message):
        compose_schema({"modules": [jobs_schema_contribution, module]})


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(SchemaError, match="unknown schema config keys"):
        compose_schema({"modules": [jobs_schema_contribution], "modulez": []})
    with pytest.raises(SchemaError, match="non-empty list"):
        compose_schema({"modules": []})
    with pytest.raises(SchemaError, match="must be SchemaContribution records"):
        compose_schema({"modules": [invoice_entity]})
    with pytest.raises(SchemaError, match="listed twice"):
        compose_schema({"modules": [jobs_schema_contribution, jobs_schema_contribution]})


def test_bad_entities_are_rejected() -> None:
    with pytest.raises(SchemaError, match="names unknown fields"):
        _entity(indexes=(Index(name="things_x_idx", fields=("missing",)),))
    with pytest.raises(SchemaError, match="cannot be nullable"):
        _entity(fields=(Field(name="id", type=FieldType.TEXT, nullable=True),))
    with pytest.raises(SchemaError, match="defines fields more than once"):
        _entity(fields=(Field(name="id", type=FieldType.TEXT), Field(name="id", type=FieldType.TEXT)))
    with pytest.raises(SchemaError, match="must be lowercase snake case"):
        Field(name="runAt", type=FieldType.FLOAT)
    with pytest.raises(SchemaError, match="must be PascalCase"):
        _entity(name="thing")
    with pytest.raises(SchemaError, match="cannot default to 'x'"):
        Field(name="n", type=FieldType.INTEGER, default="x")
    with pytest.raises(SchemaError, match="cannot default to True"):
        Field(name="n", type=FieldType.INTEGER, default=True)
    with pytest.raises(SchemaError, match="descending names fields not in the index"):
        Index(name="i", fields=("a",), descending={"b"})
    clash = _entity(
        fields=(
            Field(name="id", type=FieldType.TEXT),
            Field(name="a_b", type=FieldType.TEXT),
            Field(name="a__b", type=FieldType.TEXT),
        )
    )
    with pytest.raises(SchemaError, match="are both 'aB' in Prisma"):
        render_prisma(compose_schema({"modules": [SchemaContribution(name="x", entities=(clash,))]}))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (FieldIn(field="missing", values="x"), "is partial on the unknown field 'missing'"),
        (FieldIn(field="size", values=("big",)), r"'size' \(integer\) equal to values of another type: \['big'\]"),
        (FieldIn(field="size", values=True), r"values of another type: \[True\]"),
        (FieldNotNull(field="size"), "is partial on 'size' IS NOT NULL, but that field is never NULL"),
        ("size > 3", "where must be FieldIn or FieldNotNull"),
    ],
)
def test_bad_partial_indexes_are_rejected(where: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        _entity(indexes=(Index(name="things_idx", fields=("id",), where=where),))  # type: ignore[arg-type]


def test_bad_index_predicates_are_rejected() -> None:
    with pytest.raises(SchemaError, match="values needs at least one value"):
        FieldIn(field="size", values=())
    with pytest.raises(SchemaError, match="lists a value twice"):
        FieldIn(field="size", values=(1, 1))
    with pytest.raises(SchemaError, match="only finite numbers"):
        FieldIn(field="size", values=float("inf"))
    with pytest.raises(SchemaError, match="only str, int, float and bool literals"):
        FieldIn(field="size", values=(None,))  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="must be lowercase snake case"):
        FieldNotNull(field="Size")
    assert FieldIn(field="size", values=3).values == (3,)  # a lone value is a one-element tuple


def test_a_partial_unique_index_is_not_a_relation_target() -> None:
    """Foreign keys need a key unique over every row; a partial unique index is not one."""
    parcel_job = _entity(
        name="ParcelLabel",
        table="parcel_labels",
        fields=(Field(name="id", type=FieldType.TEXT), Field(name="tracking", type=FieldType.TEXT)),
        relations=(
            Relation(
                name="parcel",
                fields=("tracking",),
                target="Parcel",
                target_fields=("tracking",),
                back_name="labels",
                constraint="parcel_labels_parcel_fkey",
            ),
        ),
    )
    module = SchemaContribution(name="labels", entities=(parcel_job,))
    with pytest.raises(SchemaError, match="are not the primary key or a unique index of 'Parcel'"):
        compose_schema({"modules": [partial_contribution, module]})
