"""Persistence entity specs: what lssm-jobs stores, described once and rendered for Prisma or SQL.

Example::

    from lssm_jobs.entities import compose_schema, jobs_schema_contribution, render_prisma, render_sql

    schema = compose_schema({"modules": [jobs_schema_contribution, my_app_contribution]})
    print(render_prisma(schema, provider="postgresql"))
    print(render_sql(schema, dialect="sqlite"))

The sqlite backend creates its tables from this same spec, so it is the real schema.
"""

from __future__ import annotations

from lssm_jobs.entities.jobs_schema import (
    DEAD_LETTERS_TABLE,
    JOBS_SCHEMA_VERSION,
    JOBS_TABLE,
    RESULTS_TABLE,
    SCHEDULE_CLAIMS_TABLE,
    SCHEDULES_TABLE,
    SCHEMA_VERSION_TABLE,
    WORKERS_TABLE,
    jobs_schema_contribution,
)
from lssm_jobs.entities.ledger_schema import (
    LEDGER_JOBS_TABLE,
    LEDGER_SCHEMA_VERSION,
    LEDGER_SCHEMA_VERSION_TABLE,
    ledger_schema_contribution,
)
from lssm_jobs.entities.model import (
    Entity,
    Field,
    FieldIn,
    FieldNotNull,
    FieldType,
    Index,
    IndexPredicate,
    Relation,
    Schema,
    SchemaContribution,
    SchemaError,
    compose_schema,
)
from lssm_jobs.entities.prisma import PRISMA_PROVIDERS, PrismaProvider, render_prisma
from lssm_jobs.entities.sql import DIALECTS, Dialect, render_sql, render_sql_statements

__all__ = [
    "DEAD_LETTERS_TABLE",
    "DIALECTS",
    "JOBS_SCHEMA_VERSION",
    "JOBS_TABLE",
    "LEDGER_JOBS_TABLE",
    "LEDGER_SCHEMA_VERSION",
    "LEDGER_SCHEMA_VERSION_TABLE",
    "PRISMA_PROVIDERS",
    "RESULTS_TABLE",
    "SCHEDULES_TABLE",
    "SCHEDULE_CLAIMS_TABLE",
    "SCHEMA_VERSION_TABLE",
    "WORKERS_TABLE",
    "Dialect",
    "Entity",
    "Field",
    "FieldIn",
    "FieldNotNull",
    "FieldType",
    "Index",
    "IndexPredicate",
    "PrismaProvider",
    "Relation",
    "Schema",
    "SchemaContribution",
    "SchemaError",
    "compose_schema",
    "jobs_schema_contribution",
    "ledger_schema_contribution",
    "render_prisma",
    "render_sql",
    "render_sql_statements",
]
