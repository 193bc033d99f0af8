"""Render a composed :class:`~lssm_jobs.entities.model.Schema` as SQL DDL for sqlite or PostgreSQL.

Every statement is idempotent (``CREATE TABLE IF NOT EXISTS``, ``CREATE INDEX IF NOT EXISTS``), so the DDL
can be applied to a database that already has the tables. Tables come in dependency order (a table before
the tables whose foreign keys reference it). Identifiers are always double-quoted, so column names such as
``type`` or ``name`` need no thought in any dialect.
"""

from __future__ import annotations

import textwrap
from typing import Literal, get_args

from lssm_jobs.entities.model import (
    DefaultValue,
    Entity,
    Field,
    FieldNotNull,
    FieldType,
    Index,
    IndexPredicate,
    Relation,
    Schema,
    SchemaError,
)

Dialect = Literal["sqlite", "postgresql"]
DIALECTS: tuple[str, ...] = get_args(Dialect)

_TYPES: dict[str, dict[FieldType, str]] = {
    "sqlite": {
        FieldType.TEXT: "TEXT",
        FieldType.INTEGER: "INTEGER",
        FieldType.BIGINT: "INTEGER",
        FieldType.FLOAT: "REAL",
        FieldType.BOOLEAN: "INTEGER",  # sqlite has no boolean type; 0 and 1
        FieldType.BYTES: "BLOB",
    },
    "postgresql": {
        FieldType.TEXT: "TEXT",
        FieldType.INTEGER: "INTEGER",
        FieldType.BIGINT: "BIGINT",
        FieldType.FLOAT: "DOUBLE PRECISION",
        FieldType.BOOLEAN: "BOOLEAN",
        FieldType.BYTES: "BYTEA",
    },
}

_ON_DELETE = {"cascade": "CASCADE", "restrict": "RESTRICT", "set null": "SET NULL", "no action": "NO ACTION"}


def column_type(field_type: FieldType, dialect: Dialect) -> str:
    """The column type ``field_type`` renders as in ``dialect``."""
    return _TYPES[_checked(dialect)][field_type]


def _checked(dialect: str) -> Dialect:
    if dialect not in DIALECTS:
        raise SchemaError(f"unknown SQL dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    return dialect  # type: ignore[return-value]  # checked just above


def quote(name: str) -> str:
    """A double-quoted identifier (names are validated snake case, so there is nothing to escape)."""
    return f'"{name}"'


def _literal(value: DefaultValue, dialect: Dialect) -> str:
    if isinstance(value, bool):
        if dialect == "sqlite":
            return "1" if value else "0"
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def _column(field: Field, dialect: Dialect) -> str:
    parts = [quote(field.name), column_type(field.type, dialect)]
    if not field.nullable:
        parts.append("NOT NULL")
    if field.default is not None:
        parts.append(f"DEFAULT {_literal(field.default, dialect)}")
    return " ".join(parts)


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(quote(name) for name in names)


def _foreign_key(relation: Relation, schema: Schema) -> str:
    target = schema.entity(relation.target)
    return (
        f"CONSTRAINT {quote(relation.constraint)} FOREIGN KEY ({_names(relation.fields)}) "
        f"REFERENCES {quote(target.table)} ({_names(relation.target_fields)}) "
        f"ON DELETE {_ON_DELETE[relation.on_delete]}"
    )


def create_table(entity: Entity, schema: Schema, dialect: Dialect) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of ``entity`` (no trailing semicolon)."""
    dialect = _checked(dialect)
    lines = []
    for field in entity.fields:
        comment = f" -- {field.doc}" if field.doc else ""
        lines.append(f"    {_column(field, dialect)},{comment}")
    constraints = [f"PRIMARY KEY ({_names(entity.primary_key)})"]
    constraints += [_foreign_key(relation, schema) for relation in entity.relations]
    lines += [f"    {constraint}," for constraint in constraints]
    lines[-1] = lines[-1].rstrip(",")
    body = "\n".join(lines)
    return f"CREATE TABLE IF NOT EXISTS {quote(entity.table)} (\n{body}\n)"


def predicate(where: IndexPredicate, dialect: Dialect) -> str:
    """The SQL condition of a partial index predicate: ``"status" = 'active'``, ``"status" IN
    ('completed', 'cancelled')`` or ``"dedupe_key" IS NOT NULL``."""
    dialect = _checked(dialect)
    if isinstance(where, FieldNotNull):
        return f"{quote(where.field)} IS NOT NULL"
    values = [_literal(value, dialect) for value in where.values]
    if len(values) == 1:
        return f"{quote(where.field)} = {values[0]}"
    return f"{quote(where.field)} IN ({', '.join(values)})"


def create_index(entity: Entity, index: Index, dialect: Dialect) -> str:
    """The ``CREATE [UNIQUE] INDEX IF NOT EXISTS`` statement of ``index``, with ``WHERE`` and its predicate
    for a partial index (no trailing semicolon)."""
    dialect = _checked(dialect)
    columns = ", ".join(quote(name) + (" DESC" if name in index.descending else "") for name in index.fields)
    unique = "UNIQUE " if index.unique else ""
    where = f" WHERE {predicate(index.where, dialect)}" if index.where is not None else ""
    return f"CREATE {unique}INDEX IF NOT EXISTS {quote(index.name)} ON {quote(entity.table)} ({columns}){where}"


def render_sql_statements(schema: Schema, dialect: Dialect = "sqlite") -> list[str]:
    """Every DDL statement of ``schema``, without trailing semicolons, ready for ``cursor.execute``.

    :raises SchemaError: unknown dialect.
    """
    dialect = _checked(dialect)
    statements: list[str] = []
    for entity in schema.in_dependency_order():
        statements.append(create_table(entity, schema, dialect))
        statements += [create_index(entity, index, dialect) for index in entity.indexes]
    return statements


def render_sql(schema: Schema, dialect: Dialect = "sqlite") -> str:
    """The DDL script of ``schema`` for ``dialect`` (``"sqlite"`` or ``"postgresql"``), with each entity's
    doc as a comment. Apply it with ``sqlite3 db < schema.sql`` or ``psql -f schema.sql``.

    :raises SchemaError: unknown dialect.
    """
    dialect = _checked(dialect)
    modules = ", ".join(f"{c.name} v{c.version}" for c in schema.contributions)
    out = [f"-- Generated by lssm-jobs for {dialect} from: {modules}\n"]
    for entity in schema.in_dependency_order():
        out += [f"-- {line}" for line in textwrap.wrap(f"{entity.name}: {entity.doc}", 100)]
        out.append(create_table(entity, schema, dialect) + ";")
        for index in entity.indexes:
            out.append(create_index(entity, index, dialect) + ";")
        out.append("")
    return "\n".join(out)
