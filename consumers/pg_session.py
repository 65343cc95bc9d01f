"""One PostgreSQL read-model transaction: bulk loads and bulk writes (see store_postgres).

Bulk loads pass one typed array per column to `unnest`, in binary (a text array costs
~4 us of Python per UUID to dump, a binary one ~0.5 us); row upserts and applied
versions go through a binary COPY (`consumers.pg_copy`), so N rows cost a few round
trips; offsets, applied versions and dead letters are written in the same
transaction as the rows they account for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Connection, sql
from psycopg.rows import dict_row

from consumers.pg_copy import copy_upsert, staged_rows
from consumers.readmodel_store import DeadLetter, PositionKey, Status, TableWrites
from domain.base import ERASED
from projections.base import KeyValues, Row, Scrub, SetOperation, Table

PG_TYPES = {
    "text": "text", "int": "integer", "bigint": "bigint", "bool": "boolean",
    "float": "double precision", "numeric": "numeric", "uuid": "uuid",
    "timestamp": "timestamptz",
}  # fmt: skip

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


def _arrays(spec: Table, names: Sequence[str]) -> sql.Composed:
    types = {c.name: PG_TYPES[c.type] for c in spec.columns}
    return sql.SQL(", ").join(sql.SQL("%b::{}[]").format(sql.SQL(types[n])) for n in names)


def _names(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


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
        self.conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE id = 1 FOR UPDATE").format(q(self.schema, "_status"))
        )
        topics, partitions = [k[0] for k in keys], [k[1] for k in keys]
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT t, p, 0 FROM unnest(%b::text[], %b::integer[]) AS k(t, p)"
                " ORDER BY t, p ON CONFLICT DO NOTHING"
            ).format(q(self.schema, "_positions")),
            (topics, partitions),
        )
        rows = self.conn.execute(
            sql.SQL(
                "SELECT topic, partition, next_offset FROM {} WHERE (topic, partition) IN"
                " (SELECT * FROM unnest(%b::text[], %b::integer[])) ORDER BY 1, 2 FOR UPDATE"
            ).format(q(self.schema, "_positions")),
            (topics, partitions),
        ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def positions(self) -> dict[PositionKey, int]:
        rows = self.conn.execute(
            sql.SQL("SELECT topic, partition, next_offset FROM {}").format(
                q(self.schema, "_positions")
            )
        ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def load_rows(self, table: Table, keys: Sequence[KeyValues]) -> list[Row]:
        if not keys:
            return []
        statement = sql.SQL("SELECT t.* FROM {} t JOIN unnest({}) AS k({}) USING ({})").format(
            q(self.schema, table.name), _arrays(table, table.key), _names(table.key),
            _names(table.key),
        )  # fmt: skip
        columns = [list(column) for column in zip(*keys, strict=True)]
        with self.conn.cursor(row_factory=dict_row, binary=True) as cur:
            return cur.execute(statement, columns).fetchall()

    def load_applied(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        statement = sql.SQL(
            "SELECT aggregate_id, version FROM {} WHERE aggregate_id = ANY(%b::uuid[])"
        ).format(q(self.schema, "_applied"))
        with self.conn.cursor(binary=True) as cur:
            return dict(cur.execute(statement, (list(aggregate_ids),)).fetchall())

    def write(self, writes: Sequence[TableWrites], closing: Sequence[SetOperation]) -> None:
        for w in writes:
            if w.deletes:
                self._delete(w.table, w.deletes)
            if w.upserts:
                self._upsert(w.table, w.upserts, add=False)
            if w.increments:
                self._upsert(w.table, w.increments, add=True)
        for operation in closing:
            self._set_operation(operation)

    def _delete(self, table: Table, keys: list[KeyValues]) -> None:
        statement = sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
            q(self.schema, table.name), _names(table.key), _arrays(table, table.key)
        )
        self.conn.execute(statement, [list(c) for c in zip(*keys, strict=True)])

    def _upsert(self, table: Table, rows: list[Row], *, add: bool) -> None:
        names = table.column_names
        others = [n for n in names if n not in table.key]
        target = q(self.schema, table.name)
        template = "{t}.{c} + EXCLUDED.{c}" if add else "EXCLUDED.{c}"
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = " + template).format(c=sql.Identifier(n), t=target) for n in others
        )
        action = sql.SQL("DO UPDATE SET {}").format(updates) if others else sql.SQL("DO NOTHING")
        staged = (names, self._pg_types(table.name, names), staged_rows(table, rows))
        copy_upsert(self.conn, self.schema, table.name, table.key, action=action, staged=staged)

    def _pg_types(self, table: str, names: Sequence[str]) -> list[str]:
        types = {c.name: PG_TYPES[c.type] for c in self.tables[table].columns}
        return [types[n] for n in names]

    def _set_operation(self, op: SetOperation) -> None:
        target = q(self.schema, op.table)
        if not isinstance(op, Scrub):
            statement = sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                target, sql.Identifier(op.column)
            )
            self.conn.execute(statement, (op.value,))
            return
        spec = self.tables[op.table]
        assert spec.subject is not None
        blanks = sql.SQL(", ").join(
            sql.SQL("{c} = CASE WHEN {c} IS NULL THEN NULL ELSE %(erased)s END").format(
                c=sql.Identifier(c)
            )
            for c in spec.personal
        )
        update = sql.SQL("UPDATE {} SET {} WHERE {} = %(subject)s")
        self.conn.execute(
            update.format(target, blanks, sql.Identifier(spec.subject)),
            {"erased": ERASED, "subject": op.subject},
        )

    def save_applied(self, versions: dict[UUID, int]) -> None:
        if versions:
            action = sql.SQL(
                "DO UPDATE SET version = greatest({}.version, EXCLUDED.version)"
            ).format(q(self.schema, "_applied"))
            rows = (["aggregate_id", "version"], ["uuid", "integer"], list(versions.items()))
            copy_upsert(
                self.conn, self.schema, "_applied", ["aggregate_id"], action=action, staged=rows
            )

    def save_positions(self, positions: dict[PositionKey, int]) -> None:
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT * FROM unnest(%b::text[], %b::integer[], %b::bigint[])"
                " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
            ).format(q(self.schema, "_positions")),
            ([k[0] for k in positions], [k[1] for k in positions], list(positions.values())),
        )

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (event_id, topic, partition, kafka_offset, position,"
                    " aggregate_id, aggregate_version, event_type, error, payload)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(q(self.schema, "_dead_letters")),
                [d.values() for d in letters],
            )

    def record_progress(
        self, events: int, last_event_at: datetime | None, position: int, lag: int | None
    ) -> None:
        self.conn.execute(
            sql.SQL(
                "UPDATE {} SET events = events + %s, last_event_at = coalesce(%s, last_event_at),"
                " last_position = greatest(last_position, %s), lag = coalesce(%s, lag),"
                " updated_at = now() WHERE id = 1"
            ).format(q(self.schema, "_status")),
            (events, last_event_at, position, lag),
        )

    def take_dead_letters(self) -> list[tuple[int, bytes, str, int, int]]:
        """Remove and return (id, payload, topic, partition, offset) of every dead letter."""
        rows = self.conn.execute(
            sql.SQL("DELETE FROM {} RETURNING id, payload, topic, partition, kafka_offset").format(
                q(self.schema, "_dead_letters")
            )
        ).fetchall()
        return sorted((r[0], r[1], r[2], r[3], r[4]) for r in rows)


def read_status(conn: Connection[Any], name: str, generation: int) -> Status:
    schema = f"{name}_v{generation}"
    status = conn.execute(
        sql.SQL("SELECT events, last_event_at, last_position, lag FROM {}").format(
            q(schema, "_status")
        )
    ).fetchone()
    letters = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(q(schema, "_dead_letters")))
    positions = PgSession(conn, schema).positions()
    count = letters.fetchone()
    assert status is not None
    assert count is not None
    return Status(name, generation, status[0], status[1], status[2], count[0], positions, status[3])
