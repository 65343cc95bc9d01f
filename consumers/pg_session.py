"""One PostgreSQL read-model transaction: bulk loads and bulk writes (see store_postgres).

Bulk loads pass one typed array per column to `unnest`, in binary (a text array costs
~4 us of Python per UUID to dump, a binary one ~0.5 us); row upserts and applied
versions go through a binary COPY (`consumers.pg_copy`), so N rows cost a few round
trips; offsets, applied versions and dead letters are written in the same
transaction as the rows they account for.

Every statement depends only on the schema and the table spec, so it is composed once
per process and kept rendered (the `lru_cache`d functions below; rendered without a
connection, as identifiers come from the projections' ASCII schemas): composing
them again for every batch cost about a tenth of the writer's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, LiteralString
from uuid import UUID

from psycopg import Connection, sql

from consumers import rejected_runs
from consumers.pg_copy import (
    UpsertStatements,
    copy_upsert,
    create_staging_tables,
    staged_rows,
    upsert_statements,
)
from consumers.pg_times import with_edges
from consumers.readmodel_store import (
    DeadLetter,
    PositionKey,
    RecordKey,
    Rejected,
    Status,
    StoredLetter,
    TableWrites,
)
from domain.base import ERASED
from projections.base import KeyValues, Row, Scrub, SetOperation, Table

PG_TYPES = {
    "text": "text", "int": "integer", "bigint": "bigint", "bool": "boolean",
    "float": "double precision", "numeric": "numeric", "uuid": "uuid",
    "timestamp": "timestamptz",
}  # fmt: skip
_CACHED = 1024  # statements kept: a few dozen per projection generation

RUN_COLUMNS: LiteralString = (
    "ALTER TABLE {}._rejected ADD COLUMN IF NOT EXISTS last_offset bigint,"
    " ADD COLUMN IF NOT EXISTS records bigint NOT NULL DEFAULT 1,"
    " ADD COLUMN IF NOT EXISTS last_at timestamptz"
)
"""What a `_rejected` row holds of a run (`consumers.rejected_runs`) besides its first
record's offset (`kafka_offset`) and time (`at`): absent from rows written one per
record (read as one record: `last_offset` NULL is `kafka_offset`)."""
REJECTED: tuple[LiteralString, ...] = (
    "CREATE TABLE IF NOT EXISTS {}._rejected (id bigserial PRIMARY KEY, topic text,"
    " partition integer, kafka_offset bigint, position bigint, reason text,"
    " at timestamptz NOT NULL DEFAULT now())",
    "ALTER TABLE {}._status ADD COLUMN IF NOT EXISTS rejected bigint NOT NULL DEFAULT 0",
    RUN_COLUMNS,
)
"""The rejected records (runs of them) and their count (`_status.rejected`: what status
reads, so that a forger's millions of records cost /readyz and /metrics no count).
Also run on the generations an older version created (`PostgresStore`, and
`create_staging` for those that have the count but not the runs' columns)."""
_BOOKKEEPING = (
    "CREATE TABLE {}._positions (topic text, partition integer, next_offset bigint NOT NULL,"
    " PRIMARY KEY (topic, partition))",
    "CREATE TABLE {}._applied (aggregate_id uuid PRIMARY KEY, version integer NOT NULL)",
    "CREATE TABLE {}._dead_letters (id bigserial PRIMARY KEY, event_id text, topic text,"
    " partition integer, kafka_offset bigint, position bigint, aggregate_id uuid,"
    " aggregate_version integer, event_type text, error text, payload bytea,"
    " at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE {}._status (id integer PRIMARY KEY, events bigint NOT NULL,"
    " last_event_at timestamptz, last_position bigint NOT NULL, lag bigint,"
    " updated_at timestamptz)",
    "INSERT INTO {}._status VALUES (1, 0, NULL, 0, NULL, now())",
    *REJECTED,
)
_LOCK_STATUS = "SELECT 1 FROM {}._status WHERE id = 1 FOR UPDATE"
_ADD_POSITIONS = (
    "INSERT INTO {}._positions SELECT t, p, 0 FROM unnest(%b::text[], %b::integer[]) AS k(t, p)"
    " ORDER BY t, p ON CONFLICT DO NOTHING"
)
_LOCK_POSITIONS = (
    "SELECT topic, partition, next_offset FROM {}._positions WHERE (topic, partition) IN"
    " (SELECT * FROM unnest(%b::text[], %b::integer[])) ORDER BY 1, 2 FOR UPDATE"
)
_POSITIONS = "SELECT topic, partition, next_offset FROM {}._positions"
_APPLIED = "SELECT aggregate_id, version FROM {}._applied WHERE aggregate_id = ANY(%b::uuid[])"
_SAVE_POSITIONS = (
    "INSERT INTO {}._positions SELECT * FROM unnest(%b::text[], %b::integer[], %b::bigint[])"
    " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
)
_ADD_DEAD_LETTERS = (
    "INSERT INTO {}._dead_letters (event_id, topic, partition, kafka_offset, position,"
    " aggregate_id, aggregate_version, event_type, error, payload)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_NEWEST_REJECTED = (
    "SELECT DISTINCT ON (topic, partition) id, topic, partition, kafka_offset,"
    " coalesce(last_offset, kafka_offset), position, reason, records, at FROM {}._rejected"
    " WHERE (topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::integer[]))"
    " ORDER BY topic, partition, id DESC"
)
_DROP_REJECTED = "DELETE FROM {}._rejected WHERE id = ANY(%s::bigint[])"
_ADD_REJECTED = (
    "INSERT INTO {}._rejected (topic, partition, kafka_offset, last_offset, position,"
    " reason, records, at, last_at) VALUES (%s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()),"
    " now())"
)
_TRIM_REJECTED = (
    "DELETE FROM {0}._rejected WHERE id < (SELECT id FROM {0}._rejected ORDER BY id DESC"
    " OFFSET %s LIMIT 1)"
)
_COUNT_REJECTED = "UPDATE {}._status SET rejected = rejected + %s WHERE id = 1"
_HAS_RUNS = (
    "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(quote_ident(%s) || '._rejected')"
    " AND attname = 'records' AND NOT attisdropped"
)
_WITH_RUNS: set[str] = set()
"""Schemas seen with the runs' columns, by this process."""
_PROGRESS = (
    "UPDATE {}._status SET events = events + %s, last_event_at = coalesce(%s, last_event_at),"
    " last_position = greatest(last_position, %s), lag = coalesce(%s, lag),"
    " updated_at = now() WHERE id = 1"
)
_DEAD_LETTERS = (
    "SELECT topic, partition, kafka_offset, position, payload FROM {}._dead_letters ORDER BY id"
)
_DROP_DEAD_LETTERS = (
    "DELETE FROM {}._dead_letters WHERE (topic, partition, kafka_offset) IN"
    " (SELECT * FROM unnest(%b::text[], %b::integer[], %b::bigint[]))"
)


def q(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def column_defs(spec: Table) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type]))
        for c in spec.columns
    )


def create_bookkeeping(conn: Connection[Any], schema: str) -> None:
    for statement in _BOOKKEEPING:
        conn.execute(sql.SQL(statement).format(sql.Identifier(schema)))


def create_staging(conn: Connection[Any], schema: str, tables: Sequence[Table]) -> None:
    """The staging tables of every upsert target, and the runs' columns of `_rejected`
    on a generation made before them; call outside the batch's transaction."""
    create_staging_tables(conn, schema, [*(t.name for t in tables), "_applied"])
    _add_run_columns(conn, schema)


def _add_run_columns(conn: Connection[Any], schema: str) -> None:
    """Once per process and schema: `PostgresStore` upgrades only the generations that
    lack the count (`REJECTED`), not those made with the count but without the runs."""
    if schema in _WITH_RUNS:
        return
    with conn.transaction():
        if conn.execute(_HAS_RUNS, (schema,)).fetchone() is None:
            for statement in REJECTED:
                conn.execute(_rendered(statement, schema))
    _WITH_RUNS.add(schema)


def _pg_type(spec: Table, column: str) -> sql.SQL:
    return sql.SQL(next(PG_TYPES[c.type] for c in spec.columns if c.name == column))


def _arrays(spec: Table, names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("%b::{}[]").format(_pg_type(spec, n)) for n in names)


def _names(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


@lru_cache(maxsize=_CACHED)
def _rendered(template: LiteralString, schema: str) -> bytes:
    """A bookkeeping statement: `template` with its `{}` the schema."""
    return sql.SQL(template).format(sql.Identifier(schema)).as_bytes()


@lru_cache(maxsize=_CACHED)
def _load_rows(schema: str, table: Table) -> bytes:
    statement = sql.SQL("SELECT t.* FROM {} t JOIN unnest({}) AS k({}) USING ({})")
    key = _names(table.key)
    return statement.format(q(schema, table.name), _arrays(table, table.key), key, key).as_bytes()


@lru_cache(maxsize=_CACHED)
def _delete(schema: str, table: Table) -> bytes:
    statement = sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))")
    key = _names(table.key)
    return statement.format(q(schema, table.name), key, _arrays(table, table.key)).as_bytes()


@lru_cache(maxsize=_CACHED)
def _upsert(schema: str, table: Table, *, add: bool) -> UpsertStatements:
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
def _save_applied(schema: str) -> UpsertStatements:
    action = sql.SQL("DO UPDATE SET version = greatest({}.version, EXCLUDED.version)")
    types = {"aggregate_id": "uuid", "version": "integer"}
    target = q(schema, "_applied")
    return upsert_statements(schema, "_applied", ["aggregate_id"], types, action.format(target))


@lru_cache(maxsize=_CACHED)
def _delete_where(schema: str, table: Table, column: str) -> bytes:
    """Delete the rows whose `column` is any of an array of values."""
    statement = sql.SQL("DELETE FROM {} WHERE {} = ANY(%b::{}[])")
    kind = _pg_type(table, column)
    return statement.format(q(schema, table.name), sql.Identifier(column), kind).as_bytes()


@lru_cache(maxsize=_CACHED)
def _scrub(schema: str, table: Table) -> bytes:
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


class PgSession:
    """`consumers.readmodel_store.Session` inside an open psycopg transaction."""

    def __init__(self, conn: Connection[Any], schema: str, tables: Sequence[Table] = ()) -> None:
        self.conn = conn
        self.schema = schema
        self.tables = {t.name: t for t in tables}

    def lock_positions(self, keys: Sequence[PositionKey]) -> dict[PositionKey, int]:
        """Stored next offsets, row-locked so a concurrent (revoked) writer waits and re-reads.

        First the generation's `_status` row is locked: batches of one projection run one
        at a time even across processes, since rows a batch loads (a customer's activity
        from its customer and conversation topics) may be written by a batch from other
        partitions; the loads below happen under this lock.
        """
        self.conn.execute(_rendered(_LOCK_STATUS, self.schema))
        topics, partitions = [k[0] for k in keys], [k[1] for k in keys]
        self.conn.execute(_rendered(_ADD_POSITIONS, self.schema), (topics, partitions))
        lock = _rendered(_LOCK_POSITIONS, self.schema)
        rows = self.conn.execute(lock, (topics, partitions)).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def positions(self) -> dict[PositionKey, int]:
        rows = self.conn.execute(_rendered(_POSITIONS, self.schema)).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def load_rows(self, table: Table, keys: Sequence[KeyValues]) -> list[Row]:
        if not keys:
            return []
        columns = [list(column) for column in zip(*keys, strict=True)]
        statement = _load_rows(self.schema, table)
        return with_edges(self.conn, lambda cur: cur.execute(statement, columns).fetchall())

    def load_applied(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        with self.conn.cursor(binary=True) as cur:
            statement = _rendered(_APPLIED, self.schema)
            return dict(cur.execute(statement, (list(aggregate_ids),)).fetchall())

    def write(self, writes: Sequence[TableWrites], closing: Sequence[SetOperation]) -> None:
        for w in writes:
            if w.deletes:
                columns = [list(c) for c in zip(*w.deletes, strict=True)]
                self.conn.execute(_delete(self.schema, w.table), columns)
            if w.upserts:
                rows = staged_rows(w.table, w.upserts)
                copy_upsert(self.conn, _upsert(self.schema, w.table, add=False), rows)
            if w.increments:
                rows = staged_rows(w.table, w.increments)
                copy_upsert(self.conn, _upsert(self.schema, w.table, add=True), rows)
        self._set_operations(closing)

    def _set_operations(self, closing: Sequence[SetOperation]) -> None:
        """One statement per table, kind and column (`_grouped`), not one per operation."""
        for (table, column), values in _grouped(closing, self.tables):
            spec = self.tables[table]
            if column is None:
                parameters = {"erased": ERASED, "subjects": values}
                self.conn.execute(_scrub(self.schema, spec), parameters)
            else:
                self.conn.execute(_delete_where(self.schema, spec, column), (values,))

    def save_applied(self, versions: dict[UUID, int]) -> None:
        if versions:
            copy_upsert(self.conn, _save_applied(self.schema), versions.items())

    def save_positions(self, positions: dict[PositionKey, int]) -> None:
        self.conn.execute(
            _rendered(_SAVE_POSITIONS, self.schema),
            ([k[0] for k in positions], [k[1] for k in positions], list(positions.values())),
        )

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        statement = _rendered(_ADD_DEAD_LETTERS, self.schema)
        with self.conn.cursor() as cur:
            cur.executemany(statement, [d.values() for d in letters])

    def add_rejected(self, records: Sequence[Rejected]) -> None:
        """As runs, at most `rejected_runs.ROWS` rows kept; counted one by one."""
        batch = rejected_runs.runs(records)
        rows, taken = rejected_runs.joined(batch, self._newest_rejected(batch))
        if taken:
            self.conn.execute(_rendered(_DROP_REJECTED, self.schema), (taken,))
        with self.conn.cursor() as cur:
            cur.executemany(_rendered(_ADD_REJECTED, self.schema), rows)
        self.conn.execute(_rendered(_TRIM_REJECTED, self.schema), (rejected_runs.ROWS - 1,))
        self.conn.execute(_rendered(_COUNT_REJECTED, self.schema), (len(records),))

    def _newest_rejected(
        self, batch: Sequence[rejected_runs.Run]
    ) -> dict[PositionKey, rejected_runs.StoredRun]:
        keys = sorted({(r.topic, r.partition) for r in batch})
        parameters = ([k[0] for k in keys], [k[1] for k in keys])
        rows = self.conn.execute(_rendered(_NEWEST_REJECTED, self.schema), parameters)
        return {
            (r[1], r[2]): rejected_runs.StoredRun(r[0], rejected_runs.Run(*r[1:]))
            for r in rows.fetchall()
        }

    def record_progress(
        self, events: int, last_event_at: datetime | None, position: int, lag: int | None
    ) -> None:
        self.conn.execute(_rendered(_PROGRESS, self.schema), (events, last_event_at, position, lag))

    def dead_letters(self) -> list[StoredLetter]:
        rows = self.conn.execute(_rendered(_DEAD_LETTERS, self.schema)).fetchall()
        return [StoredLetter(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def drop_dead_letters(self, records: Sequence[RecordKey]) -> None:
        columns = [list(column) for column in zip(*records, strict=True)] or [[], [], []]
        self.conn.execute(_rendered(_DROP_DEAD_LETTERS, self.schema), columns)


SetTarget = tuple[str, str | None]
"""(table, column) a set operation matches rows on; column None: a scrub, by subject."""


def _grouped(
    closing: Sequence[SetOperation], tables: dict[str, Table]
) -> list[tuple[SetTarget, list[Any]]]:
    """A segment's closing operations grouped by target, in order of first appearance.

    They run after the segment's row writes (`projections.base.Batch`) and only delete
    rows or blank personal columns, so they commute unless a delete matches on a
    column a scrub blanks: a delete after a scrub removes the same rows, a scrub after
    a delete finds nothing more to blank. Such a segment (no projection has one) keeps
    its order, one operation per group.
    """
    targets = [_target(op) for op in closing]
    if any(column in tables[table].personal for (table, column), _ in targets):
        return [(target, [value]) for target, value in targets]
    groups: dict[SetTarget, list[Any]] = {}
    for target, value in targets:
        groups.setdefault(target, []).append(value)
    return list(groups.items())


def _target(op: SetOperation) -> tuple[SetTarget, Any]:
    if isinstance(op, Scrub):
        return (op.table, None), op.subject
    return (op.table, op.column), op.value


def read_status(conn: Connection[Any], name: str, generation: int) -> Status:
    schema = f"{name}_v{generation}"
    row = conn.execute(
        sql.SQL(
            "SELECT events, last_event_at, last_position, lag, rejected,"
            " (SELECT count(*) FROM {}) FROM {}"
        ).format(q(schema, "_dead_letters"), q(schema, "_status"))
    ).fetchone()
    positions = PgSession(conn, schema).positions()
    assert row is not None
    events, last_event_at, last_position, lag, rejected, dead = row
    return Status(
        name, generation, events, last_event_at, last_position, dead, positions, lag, rejected
    )
