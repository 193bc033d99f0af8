"""Render a composed :class:`~lssm_jobs.entities.model.Schema` as a Prisma schema.

Models keep Prisma's conventions (PascalCase models, camelCase fields) and map to the same tables, columns,
index and constraint names as the SQL renderer, via ``@map``, ``@@map`` and ``map:`` arguments, so a
database migrated by Prisma and one created by :func:`lssm_jobs.entities.render_sql` are the same. The one
thing Prisma schemas cannot say portably is a partial index (``CREATE INDEX ... WHERE``): those render as full
indexes with a comment saying how to make them partial in the migration.

By default the datasource has no ``url`` (Prisma 7 reads it from ``prisma.config.ts``); pass ``url_env`` to
render ``url = env("...")`` for Prisma 6 and older.
"""

from __future__ import annotations

import textwrap
from typing import Literal

from lssm_jobs.entities.model import (
    DefaultValue,
    Entity,
    Field,
    FieldType,
    Index,
    Relation,
    Schema,
    SchemaError,
)
from lssm_jobs.entities.sql import predicate

PrismaProvider = Literal["postgresql", "sqlite"]
PRISMA_PROVIDERS: tuple[str, ...] = ("postgresql", "sqlite")

_TYPES = {
    FieldType.TEXT: "String",
    FieldType.INTEGER: "Int",
    FieldType.BIGINT: "BigInt",
    FieldType.FLOAT: "Float",
    FieldType.BOOLEAN: "Boolean",
    FieldType.BYTES: "Bytes",
}

_ON_DELETE = {"cascade": "Cascade", "restrict": "Restrict", "set null": "SetNull", "no action": "NoAction"}


def camel_case(name: str) -> str:
    """``run_at`` -> ``runAt``: the Prisma field name of a column."""
    head, *rest = [part for part in name.split("_") if part]
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _default(value: DefaultValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _string(value)


def _doc_lines(doc: str, indent: str) -> list[str]:
    return [f"{indent}/// {line}" for line in textwrap.wrap(doc, 100 - len(indent))]


def _relation_name(entity: Entity, relation: Relation) -> str:
    return entity.name + camel_case(relation.name)[:1].upper() + camel_case(relation.name)[1:]


def _field_names(entity: Entity) -> dict[str, str]:
    names: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in [field.name for field in entity.fields] + [relation.name for relation in entity.relations]:
        prisma_name = camel_case(name)
        if prisma_name in seen:
            raise SchemaError(
                f"entity {entity.name!r}: {name!r} and {seen[prisma_name]!r} are both {prisma_name!r} "
                "in Prisma"
            )
        seen[prisma_name] = name
        names[name] = prisma_name
    return names


def _field_line(entity: Entity, field: Field, names: dict[str, str]) -> tuple[str, str, str]:
    prisma_type = _TYPES[field.type] + ("?" if field.nullable else "")
    attributes = []
    if entity.primary_key == (field.name,):
        attributes.append("@id")
    if field.default is not None:
        attributes.append(f"@default({_default(field.default)})")
    if names[field.name] != field.name:
        attributes.append(f"@map({_string(field.name)})")
    return names[field.name], prisma_type, " ".join(attributes)


def _list(names: tuple[str, ...], mapping: dict[str, str], descending: frozenset[str] = frozenset()) -> str:
    return (
        "["
        + ", ".join(mapping[name] + ("(sort: Desc)" if name in descending else "") for name in names)
        + "]"
    )


def _partial_comment(index: Index, provider: PrismaProvider) -> list[str]:
    """Comment lines above a partial index, which the Prisma schema renders as a full index."""
    if index.where is None:
        return []
    text = (
        f"Partial in SQL: WHERE {predicate(index.where, provider)}. Prisma renders it as a full index; to "
        "make it partial, create the migration with `prisma migrate dev --create-only` and add the WHERE to "
        'its CREATE INDEX (lssm-jobs docs/entities.md, "Partial indexes in Prisma").'
    )
    return [f"  // {line}" for line in textwrap.wrap(text, 96, break_on_hyphens=False)]


def _model(entity: Entity, schema: Schema, provider: PrismaProvider) -> list[str]:
    names = _field_names(entity)
    rows: list[tuple[list[str], tuple[str, str, str]]] = []
    for field in entity.fields:
        rows.append((_doc_lines(field.doc, "  "), _field_line(entity, field, names)))
    for relation in entity.relations:
        target = schema.entity(relation.target)
        target_names = _field_names(target)
        optional = all(entity.field(name).nullable for name in relation.fields)
        attributes = (
            f"@relation({_string(_relation_name(entity, relation))}, "
            f"fields: {_list(relation.fields, names)}, "
            f"references: {_list(relation.target_fields, target_names)}, "
            f"onDelete: {_ON_DELETE[relation.on_delete]}, onUpdate: NoAction"
            # Prisma's sqlite connector cannot name foreign keys (sqlite ignores the names anyway)
            + (f", map: {_string(relation.constraint)})" if provider != "sqlite" else ")")
        )
        rows.append(([], (names[relation.name], target.name + ("?" if optional else ""), attributes)))
    for other in schema.entities:  # the reverse sides of relations that point here
        for relation in other.relations:
            if relation.target == entity.name:
                attributes = f"@relation({_string(_relation_name(other, relation))})"
                rows.append(([], (camel_case(relation.back_name), other.name + "[]", attributes)))

    name_width = max(len(row[1][0]) for row in rows)
    type_width = max(len(row[1][1]) for row in rows)
    lines = _doc_lines(entity.doc, "")
    lines.append(f"model {entity.name} {{")
    for docs, (name, prisma_type, attributes) in rows:
        lines += docs
        lines.append(f"  {name.ljust(name_width)} {prisma_type.ljust(type_width)} {attributes}".rstrip())
    block = []
    if len(entity.primary_key) > 1:
        block.append(f"  @@id({_list(entity.primary_key, names)})")
    for index in entity.indexes:
        kind = "@@unique" if index.unique else "@@index"
        block += _partial_comment(index, provider)
        block.append(f"  {kind}({_list(index.fields, names, index.descending)}, map: {_string(index.name)})")
    block.append(f"  @@map({_string(entity.table)})")
    lines.append("")
    lines += block
    lines.append("}")
    return lines


def render_prisma(
    schema: Schema,
    *,
    provider: PrismaProvider = "postgresql",
    url_env: str | None = None,
    generator: str | None = "prisma-client-js",
) -> str:
    """The Prisma schema of ``schema``: a datasource block, a generator block and one model per entity.

    :param provider: the datasource provider, ``"postgresql"`` or ``"sqlite"``.
    :param url_env: render ``url = env(url_env)`` in the datasource (Prisma 6 and older need it; Prisma 7
        rejects it and takes the URL from ``prisma.config.ts``).
    :param generator: the client generator's provider, or None to render no generator block.
    :raises SchemaError: unknown provider, or two names of an entity that are the same in camelCase.
    """
    if provider not in PRISMA_PROVIDERS:
        raise SchemaError(
            f"unknown Prisma provider {provider!r}; expected one of {', '.join(PRISMA_PROVIDERS)}"
        )
    modules = ", ".join(f"{c.name} v{c.version}" for c in schema.contributions)
    lines = [
        f"// Generated by lssm-jobs from: {modules}",
        "",
        "datasource db {",
        f"  provider = {_string(provider)}",
    ]
    if url_env is not None:
        lines.append(f"  url      = env({_string(url_env)})")
    lines += ["}", ""]
    if generator is not None:
        lines += ["generator client {", f"  provider = {_string(generator)}", "}", ""]
    for entity in schema.entities:
        lines += _model(entity, schema, provider)
        lines.append("")
    return "\n".join(lines)
