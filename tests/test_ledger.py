"""The job ledger contract suite over the built-in ledgers, and their registration."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from lssm_jobs.entities import (
    compose_schema,
    jobs_schema_contribution,
    ledger_schema_contribution,
    render_sql,
)
from lssm_jobs.ledger import JobLedger, MemoryLedger, open_ledger
from lssm_jobs.ledger.sqlite import SqliteLedger
from lssm_jobs.plugins import get_plugins
from lssm_jobs.testing import LedgerConformance


class TestMemoryLedger(LedgerConformance):
    @pytest.fixture
    def lssm_jobs_ledger_factory(self) -> Callable[[], JobLedger]:
        namespace = f"test-{uuid.uuid4().hex}"
        return lambda: MemoryLedger(namespace=namespace)


class TestSqliteLedger(LedgerConformance):
    @pytest.fixture
    def lssm_jobs_ledger_factory(self, tmp_path: Path) -> Callable[[], JobLedger]:
        return lambda: SqliteLedger(path=tmp_path / "ledger.db")


def test_builtin_ledgers_are_registered_through_the_hook(tmp_path: Path) -> None:
    assert {"memory", "sqlite"} <= set(get_plugins().job_ledgers())
    assert isinstance(open_ledger("memory"), MemoryLedger)
    ledger = open_ledger("sqlite", url=f"sqlite:///{tmp_path / 'l.db'}")
    assert isinstance(ledger, SqliteLedger) and ledger.path.endswith("l.db")
    with pytest.raises(TypeError, match="ledger 'memory' rejected its options"):
        open_ledger("memory", nonsense=1)
    with pytest.raises(LookupError, match="unknown ledger 'nope'"):
        open_ledger("nope")


def test_ledger_tables_compose_with_the_queue_tables() -> None:
    schema = compose_schema({"modules": [jobs_schema_contribution, ledger_schema_contribution]})
    script = render_sql(schema, "postgresql")
    assert 'CREATE TABLE IF NOT EXISTS "lssm_ledger_jobs"' in script
    assert 'CREATE TABLE IF NOT EXISTS "lssm_jobs"' in script


def test_sqlite_ledger_shares_a_file_with_the_sqlite_queue(tmp_path: Path) -> None:
    import asyncio

    from lssm_jobs.backends.sqlite import SqliteBackend
    from lssm_jobs.testing import opened

    async def main() -> None:
        path = tmp_path / "shared.db"
        async with opened(SqliteBackend(path=path)):
            ledger = SqliteLedger(path=path)
            await ledger.open()
            await ledger.close()
            await ledger.open()  # tables exist already: opening again is a no-op
            await ledger.close()

    asyncio.run(main())
