"""The records that describe persistence entities, and :func:`compose_schema`, which checks and joins them.

An entity spec says everything a renderer needs to produce a Prisma model or a ``CREATE TABLE``: its
fields (with portable types, nullability and defaults), its primary key, its indexes and its relations.
Names are database names (lowercase snake case); renderers derive other spellings (Prisma's camelCase field
names) from them, so one spec gives the same tables whichever way it is rendered.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from lssm_jobs.errors import LssmJobsError

_SQL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODEL_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
#: Postgres truncates identifiers longer than this, which would make two long index names collide silently.
MAX_NAME_LENGTH = 63

#: A literal column default. Booleans are rendered per dialect (``0``/``1`` in sqlite, ``FALSE``/``TRUE``).
DefaultValue = str | int | float | bool

OnDelete = Literal["cascade", "restrict", "set null", "no action"]


class SchemaError(LssmJobsError, ValueError):
    """An entity spec or a composition of specs is inconsistent (unknown field, duplicate name, ...)."""


class FieldType(str, enum.Enum):
    """Portable column types; each renderer maps them to its own (see the table in ``docs/entities.md``)."""

    TEXT = "text"
    INTEGER = "integer"  # 32-bit in postgres; sqlite integers are 64-bit anyway
    BIGINT = "bigint"
    FLOAT = "float"  # double precision: epoch seconds with sub-millisecond resolution
    BOOLEAN = "boolean"
    BYTES = "bytes"


def _sql_name(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not _SQL_NAME.match(value) or len(value) > MAX_NAME_LENGTH:
        raise SchemaError(
            f"{attribute.name} {value!r} must be lowercase snake case (a letter, then letters, digits or "
            f"'_') of at most {MAX_NAME_LENGTH} characters"
        )


def _model_name(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not _MODEL_NAME.match(value):
        raise SchemaError(
            f"{attribute.name} {value!r} must be PascalCase (a capital letter, then letters/digits)"
        )


def _name_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):  # a lone name is a common slip for a one-element tuple
        return (value,)
    return tuple(value)


def _field_tuple(value: Iterable[Field]) -> tuple[Field, ...]:
    return tuple(value)


def _index_tuple(value: Iterable[Index]) -> tuple[Index, ...]:
    return tuple(value)


def _relation_tuple(value: Iterable[Relation]) -> tuple[Relation, ...]:
    return tuple(value)


def _entity_tuple(value: Iterable[Entity]) -> tuple[Entity, ...]:
    return tuple(value)


def _name_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset((value,) if isinstance(value, str) else value)


def _names(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise SchemaError(f"{attribute.name} needs at least one field")
    if len(set(value)) != len(value):
        raise SchemaError(f"{attribute.name} {value!r} names a field twice")


def _literal_fits(field_type: FieldType, value: DefaultValue) -> bool:
    """Whether the literal ``value`` can be stored in a column of ``field_type``."""
    expected: tuple[type[Any], ...] = {
        FieldType.TEXT: (str,),
        FieldType.INTEGER: (int,),
        FieldType.BIGINT: (int,),
        FieldType.FLOAT: (int, float),
        FieldType.BOOLEAN: (bool,),
        FieldType.BYTES: (),
    }[field_type]
    wrong_bool = isinstance(value, bool) and field_type is not FieldType.BOOLEAN
    return not wrong_bool and isinstance(value, expected)


def _default_matches_type(field: Field) -> None:
    value = field.default
    if value is None:
        return
    if not _literal_fits(field.type, value):
        raise SchemaError(
            f"field {field.name!r} of type {field.type.value} cannot default to {value!r}"
            + (" (bytes columns take no default)" if field.type is FieldType.BYTES else "")
        )


@attrs.frozen(kw_only=True)
class Field:
    """One column.

    :param name: the column name (lowercase snake case); Prisma renders it as a camelCase field with ``@map``.
    :param type: its portable type.
    :param nullable: whether NULL is allowed (``String?`` in Prisma).
    :param default: a literal default, or None for no default.
    :param doc: one line shown as a comment in the rendered schema.
    """

    name: str = attrs.field(validator=_sql_name)
    type: FieldType
    nullable: bool = False
    default: DefaultValue | None = None
    doc: str = ""

    def __attrs_post_init__(self) -> None:
        _default_matches_type(self)


def _value_tuple(value: DefaultValue | Iterable[DefaultValue]) -> tuple[DefaultValue, ...]:
    if isinstance(value, (str, int, float)):  # bool is an int; a lone value is a one-element tuple
        return (value,)
    return tuple(value)


def _values(_: object, attribute: attrs.Attribute[Any], value: tuple[DefaultValue, ...]) -> None:
    if not value:
        raise SchemaError(f"{attribute.name} needs at least one value")
    for item in value:
        if not isinstance(item, (str, int, float)):
            raise SchemaError(f"{attribute.name} holds {item!r}; only str, int, float and bool literals")
        if isinstance(item, float) and not math.isfinite(item):
            raise SchemaError(f"{attribute.name} holds {item!r}; only finite numbers have a SQL literal")
    if len(set(value)) != len(value):
        raise SchemaError(f"{attribute.name} {value!r} lists a value twice")


@attrs.frozen(kw_only=True)
class FieldIn:
    """A partial index predicate: rows whose ``field`` equals one of ``values``.

    Rendered ``"status" = 'active'`` for one value and ``"status" IN ('completed', 'cancelled')`` for
    several, in the order given. sqlite uses the index only for queries whose WHERE contains this same term
    (same values, same order), so write the queries' condition exactly as the predicate renders.

    :param field: a field of the entity (not a ``BYTES`` field).
    :param values: literals of the field's type (a lone value is a one-element tuple).
    """

    field: str = attrs.field(validator=_sql_name)
    values: tuple[DefaultValue, ...] = attrs.field(converter=_value_tuple, validator=_values)


@attrs.frozen(kw_only=True)
class FieldNotNull:
    """A partial index predicate: rows whose ``field`` is not NULL (``"dedupe_key" IS NOT NULL``), for a
    nullable field that is NULL in most rows. Any query comparing the field with ``=``, ``<``, ``IN`` ...
    implies it, so sqlite uses the index for those.

    :param field: a nullable field of the entity.
    """

    field: str = attrs.field(validator=_sql_name)


#: What :attr:`Index.where` takes: a small typed condition on one field, never free SQL, so it renders
#: portably and is checked against the entity's fields.
IndexPredicate = FieldIn | FieldNotNull


@attrs.frozen(kw_only=True)
class Index:
    """A secondary index (or unique constraint) over one or more fields, in order.

    :param name: the index name; unique across the whole composed schema, since both sqlite and postgres keep
        index names in one namespace per schema.
    :param fields: field names, most selective first as the queries that use it need.
    :param descending: the fields sorted descending in the index (e.g. ``priority`` for "highest first"), so
        an ``ORDER BY priority DESC, run_at`` reads the index in order instead of sorting.
    :param unique: a unique index (``@@unique`` in Prisma).
    :param where: make it a partial index over the rows matching this predicate only (``CREATE INDEX ...
        WHERE``), so writes to other rows skip it. Prisma renders a full index with a comment (see
        ``docs/entities.md``).
    """

    name: str = attrs.field(validator=_sql_name)
    fields: tuple[str, ...] = attrs.field(converter=_name_tuple, validator=_names)
    descending: frozenset[str] = attrs.field(converter=_name_set, factory=frozenset)
    unique: bool = False
    where: IndexPredicate | None = None
    doc: str = ""

    def __attrs_post_init__(self) -> None:
        stray = self.descending - set(self.fields)
        if stray:
            raise SchemaError(
                f"index {self.name!r}: descending names fields not in the index: {sorted(stray)}"
            )
        if self.where is not None and not isinstance(self.where, (FieldIn, FieldNotNull)):
            raise SchemaError(
                f"index {self.name!r}: where must be FieldIn or FieldNotNull, not {self.where!r}"
            )


@attrs.frozen(kw_only=True)
class Relation:
    """A foreign key from this entity's ``fields`` to ``target_fields`` of entity ``target``.

    :param name: the relation field on this entity in Prisma (snake case, rendered camelCase); it must not
        clash with a column name.
    :param target: the referenced entity's :attr:`Entity.name` (it may come from another contribution).
    :param target_fields: a primary key or unique index of the target.
    :param back_name: the list field Prisma adds to the target for the reverse side.
    :param on_delete: what deleting the referenced row does to rows of this entity.
    :param constraint: the foreign key constraint name.
    """

    name: str = attrs.field(validator=_sql_name)
    fields: tuple[str, ...] = attrs.field(converter=_name_tuple, validator=_names)
    target: str = attrs.field(validator=_model_name)
    target_fields: tuple[str, ...] = attrs.field(converter=_name_tuple, validator=_names)
    back_name: str = attrs.field(validator=_sql_name)
    on_delete: OnDelete = "restrict"
    constraint: str = attrs.field(validator=_sql_name)

    def __attrs_post_init__(self) -> None:
        if len(self.fields) != len(self.target_fields):
            raise SchemaError(
                f"relation {self.name!r}: {len(self.fields)} fields cannot reference "
                f"{len(self.target_fields)} target fields"
            )


@attrs.frozen(kw_only=True)
class Entity:
    """A table: its fields, primary key, indexes and relations.

    :param name: the model name (PascalCase), unique across a composed schema; Prisma's model name.
    :param table: the table name (lowercase snake case), unique across a composed schema.
    :param primary_key: one field (``@id``) or several (``@@id([...])``).
    :param doc: what the entity is for; rendered as a comment above the model / table.
    """

    name: str = attrs.field(validator=_model_name)
    table: str = attrs.field(validator=_sql_name)
    fields: tuple[Field, ...] = attrs.field(converter=_field_tuple)
    primary_key: tuple[str, ...] = attrs.field(converter=_name_tuple, validator=_names)
    indexes: tuple[Index, ...] = attrs.field(converter=_index_tuple, default=())
    relations: tuple[Relation, ...] = attrs.field(converter=_relation_tuple, default=())
    doc: str = ""

    def __attrs_post_init__(self) -> None:
        names = [field.name for field in self.fields]
        if not names:
            raise SchemaError(f"entity {self.name!r} has no fields")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise SchemaError(f"entity {self.name!r} defines fields more than once: {duplicates}")
        known = set(names)

        def check(owner: str, used: Sequence[str]) -> None:
            unknown = [name for name in used if name not in known]
            if unknown:
                raise SchemaError(f"entity {self.name!r}: {owner} names unknown fields {unknown}")

        check("the primary key", self.primary_key)
        for key in self.primary_key:
            if self.field(key).nullable:
                raise SchemaError(f"entity {self.name!r}: primary key field {key!r} cannot be nullable")
        for index in self.indexes:
            check(f"index {index.name!r}", index.fields)
            if index.where is not None:
                self._check_predicate(index)
        index_names = [index.name for index in self.indexes]
        if len(set(index_names)) != len(index_names):
            raise SchemaError(f"entity {self.name!r} defines an index name twice: {index_names}")
        for relation in self.relations:
            check(f"relation {relation.name!r}", relation.fields)
            if relation.name in known:
                raise SchemaError(
                    f"entity {self.name!r}: relation {relation.name!r} clashes with a field of that name"
                )
            if relation.on_delete == "set null" and not all(self.field(f).nullable for f in relation.fields):
                raise SchemaError(
                    f"entity {self.name!r}: relation {relation.name!r} sets its fields to NULL on delete, "
                    "so they must be nullable"
                )

    def _check_predicate(self, index: Index) -> None:
        where = index.where
        owner = f"entity {self.name!r}: index {index.name!r}"
        if where is None:
            return
        if where.field not in {field.name for field in self.fields}:
            raise SchemaError(f"{owner} is partial on the unknown field {where.field!r}")
        field = self.field(where.field)
        if isinstance(where, FieldNotNull):
            if not field.nullable:
                raise SchemaError(
                    f"{owner} is partial on {field.name!r} IS NOT NULL, but that field is never NULL"
                )
            return
        wrong = [value for value in where.values if not _literal_fits(field.type, value)]
        if wrong:
            raise SchemaError(
                f"{owner} is partial on {field.name!r} ({field.type.value}) equal to values of another "
                f"type: {wrong}"
            )

    def field(self, name: str) -> Field:
        """The field named ``name``. :raises KeyError: there is none."""
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(f"entity {self.name!r} has no field {name!r}")

    def unique_keys(self) -> list[tuple[str, ...]]:
        """The field tuples known to be unique: the primary key and every unique index over all rows (a
        partial unique index cannot be the target of a foreign key)."""
        return [
            self.primary_key,
            *(index.fields for index in self.indexes if index.unique and index.where is None),
        ]


@attrs.frozen(kw_only=True)
class SchemaContribution:
    """The entities one module (lssm-jobs itself, or an application's own module) adds to a schema.

    :param name: the contributing module, named in errors (e.g. ``"lssm_jobs"``).
    :param entities: its entities.
    :param version: the contribution's schema version, for the module's own migrations.
    """

    name: str
    entities: tuple[Entity, ...] = attrs.field(converter=_entity_tuple)
    version: int = 1
    doc: str = ""

    def entity(self, name: str) -> Entity:
        """The entity named ``name`` (model name). :raises KeyError: there is none."""
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(f"contribution {self.name!r} has no entity {name!r}")


@attrs.frozen(kw_only=True)
class Schema:
    """A checked composition of contributions: what the renderers take."""

    contributions: tuple[SchemaContribution, ...]
    entities: tuple[Entity, ...]

    def entity(self, name: str) -> Entity:
        """The entity named ``name`` (model name). :raises KeyError: there is none."""
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(f"the schema has no entity {name!r}")

    def in_dependency_order(self) -> list[Entity]:
        """Entities with every relation target before the entities that reference it (for ``CREATE TABLE``);
        otherwise in composition order."""
        by_name = {entity.name: entity for entity in self.entities}
        ordered: list[Entity] = []
        placed: set[str] = set()

        def place(entity: Entity, path: tuple[str, ...]) -> None:
            if entity.name in placed:
                return
            if entity.name in path:
                cycle = " -> ".join((*path, entity.name))
                raise SchemaError(f"relations form a cycle, which CREATE TABLE order cannot satisfy: {cycle}")
            for relation in entity.relations:
                if relation.target != entity.name:
                    place(by_name[relation.target], (*path, entity.name))
            placed.add(entity.name)
            ordered.append(entity)

        for entity in self.entities:
            place(entity, ())
        return ordered


_CONFIG_KEYS = frozenset({"modules"})


def compose_schema(config: Mapping[str, Any]) -> Schema:
    """Join the contributions listed in ``config["modules"]`` into one checked :class:`Schema`.

    Example::

        from lssm_jobs.entities import compose_schema, jobs_schema_contribution
        schema = compose_schema({"modules": [jobs_schema_contribution, billing_contribution]})

    :raises SchemaError: an unknown config key; a module that is not a :class:`SchemaContribution`; two
        contributions defining the same entity name, table name or index name (the error names both); a
        relation to an entity no contribution defines, to fields that are not a key of the target, or between
        fields of different types.
    """
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise SchemaError(f"unknown schema config keys {unknown}; expected {sorted(_CONFIG_KEYS)}")
    modules = config.get("modules")
    if not isinstance(modules, Sequence) or isinstance(modules, (str, bytes)) or not modules:
        raise SchemaError('schema config needs "modules": a non-empty list of SchemaContribution')
    contributions: list[SchemaContribution] = []
    for module in modules:
        if not isinstance(module, SchemaContribution):
            raise SchemaError(f"schema modules must be SchemaContribution records, got {module!r}")
        if any(existing.name == module.name for existing in contributions):
            raise SchemaError(f"schema module {module.name!r} is listed twice")
        contributions.append(module)

    owners: dict[tuple[str, str], str] = {}  # (kind, name) -> contribution that defined it
    entities: list[Entity] = []
    for contribution in contributions:
        for entity in contribution.entities:
            names = [("entity", entity.name), ("table", entity.table)]
            names += [("index", index.name) for index in entity.indexes]
            names += [("constraint", relation.constraint) for relation in entity.relations]
            for kind, name in names:
                owner = owners.get((kind, name))
                if owner is not None:
                    raise SchemaError(
                        f"{kind} name {name!r} is defined by both module {owner!r} and module "
                        f"{contribution.name!r}; rename one of them"
                    )
                owners[(kind, name)] = contribution.name
            entities.append(entity)
    schema = Schema(contributions=tuple(contributions), entities=tuple(entities))
    for entity in entities:
        for relation in entity.relations:
            _check_relation(schema, entity, relation)
    schema.in_dependency_order()  # raises on cycles
    _check_back_names(schema)
    return schema


def _check_relation(schema: Schema, entity: Entity, relation: Relation) -> None:
    where = f"entity {entity.name!r}, relation {relation.name!r}"
    try:
        target = schema.entity(relation.target)
    except KeyError:
        raise SchemaError(f"{where}: no module defines the target entity {relation.target!r}") from None
    for field_name in relation.target_fields:
        if not any(field.name == field_name for field in target.fields):
            raise SchemaError(f"{where}: target {target.name!r} has no field {field_name!r}")
    if relation.target_fields not in target.unique_keys():
        raise SchemaError(
            f"{where}: target fields {list(relation.target_fields)} are not the primary key or a unique "
            f"index of {target.name!r}"
        )
    for own, other in zip(relation.fields, relation.target_fields, strict=True):
        own_type, other_type = entity.field(own).type, target.field(other).type
        if own_type is not other_type:
            raise SchemaError(
                f"{where}: field {own!r} ({own_type.value}) cannot reference {target.name}.{other} "
                f"({other_type.value})"
            )


def _check_back_names(schema: Schema) -> None:
    for target in schema.entities:
        taken = {field.name for field in target.fields} | {relation.name for relation in target.relations}
        for entity in schema.entities:
            for relation in entity.relations:
                if relation.target != target.name:
                    continue
                if relation.back_name in taken:
                    raise SchemaError(
                        f"entity {entity.name!r}, relation {relation.name!r}: back_name "
                        f"{relation.back_name!r} clashes with a field or relation of {target.name!r}"
                    )
                taken.add(relation.back_name)
