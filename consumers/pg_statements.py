"""The statements of a PostgreSQL read-model transaction, composed once per process.

Every statement depends only on the schema and the table spec, so it is composed once
per process and kept rendered (the `lru_cache`d functions below; rendered without a
connection, as identifiers come from the projections' ASCII schemas): composing them
again for every batch cost about a tenth of the writer's CPU. Bulk loads and deletes
pass one typed array per column to `unnest`, in binary (a text array costs ~4 us of
Python per UUID to dump, a binary one ~0.5 us); upserts go through a binary COPY
(`consumers.pg_copy`). Used by `pg_session` and `pg_bookkeeping`; `PG_TYPES`,
`column_defs` and `q` by `store_postgres` too.

I/O: none (statements only).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import LiteralString

from psycopg import sql

from consumers.pg_copy import UpsertStatements, upsert_statements
from projections.base import Table

PG_TYPES = {
    "text": "text", "int": "integer", "bigint": "bigint", "bool": "boolean",
    "float": "double precision", "numeric": "numeric", "uuid": "uuid",
    "timestamp": "timestamptz",
}  # fmt: skip
_CACHED = 1024  # statements kept: a few dozen per projection generation


def q(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def column_defs(spec: Table) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type]))
        for c in spec.columns
    )


def _pg_type(spec: Table, column: str) -> sql.SQL:
    return sql.SQL(next(PG_TYPES[c.type] for c in spec.columns if c.name == column))


def _arrays(spec: Table, names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("%b::{}[]").format(_pg_type(spec, n)) for n in names)


def _names(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


@lru_cache(maxsize=_CACHED)
def rendered(template: LiteralString, schema: str) -> bytes:
    """A bookkeeping statement: `template` with its `{}` the schema."""
    return sql.SQL(template).format(sql.Identifier(schema)).as_bytes()


@lru_cache(maxsize=_CACHED)
def load_rows(schema: str, table: Table) -> bytes:
    statement = sql.SQL("SELECT t.* FROM {} t JOIN unnest({}) AS k({}) USING ({})")
    key = _names(table.key)
    return statement.format(q(schema, table.name), _arrays(table, table.key), key, key).as_bytes()


@lru_cache(maxsize=_CACHED)
def delete_keys(schema: str, table: Table) -> bytes:
    statement = sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))")
    key = _names(table.key)
    return statement.format(q(schema, table.name), key, _arrays(table, table.key)).as_bytes()


@lru_cache(maxsize=_CACHED)
def upsert(schema: str, table: Table, *, add: bool) -> UpsertStatements:
    """Upsert whole rows (`add`: counters added to the stored ones instead)."""
    others = [n for n in table.column_names if n not in table.key]
    target = q(schema, table.name)
    template = "{t}.{c} + EXCLUDED.{c}" if add else "EXCLUDED.{c}"
    updates = sql.SQL(", ").join(
        sql.SQL("{c} = " + template).format(c=sql.Identifier(n), t=target) for n in others
    )
    action = sql.SQL("DO UPDATE SET {}").format(updates) if others else sql.SQL("DO NOTHING")
    types = {c.name: PG_TYPES[c.type] for c in table.columns}
    return upsert_statements(schema, table.name, table.key, types, action)


@lru_cache(maxsize=_CACHED)
def save_applied(schema: str) -> UpsertStatements:
    action = sql.SQL("DO UPDATE SET version = greatest({}.version, EXCLUDED.version)")
    types = {"aggregate_id": "uuid", "version": "integer"}
    target = q(schema, "_applied")
    return upsert_statements(schema, "_applied", ["aggregate_id"], types, action.format(target))


@lru_cache(maxsize=_CACHED)
def delete_where(schema: str, table: Table, column: str) -> bytes:
    """Delete the rows whose `column` is any of an array of values."""
    statement = sql.SQL("DELETE FROM {} WHERE {} = ANY(%b::{}[])")
    kind = _pg_type(table, column)
    return statement.format(q(schema, table.name), sql.Identifier(column), kind).as_bytes()


@lru_cache(maxsize=_CACHED)
def scrub(schema: str, table: Table) -> bytes:
    """Blank the personal columns (non-null values become `%(erased)s`) of the rows
    whose subject is in the array `%(subjects)b`."""
    assert table.subject is not None
    blanks = sql.SQL(", ").join(
        sql.SQL("{c} = CASE WHEN {c} IS NULL THEN NULL ELSE %(erased)s END").format(
            c=sql.Identifier(c)
        )
        for c in table.personal
    )
    kind = _pg_type(table, table.subject)
    statement = sql.SQL("UPDATE {} SET {} WHERE {} = ANY(%(subjects)b::{}[])")
    target, subject = q(schema, table.name), sql.Identifier(table.subject)
    return statement.format(target, blanks, subject, kind).as_bytes()
