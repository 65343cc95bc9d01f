"""One PostgreSQL read-model transaction: bulk loads and bulk writes (see store_postgres).

Bulk loads pass one typed array per column to `unnest`, in binary; row upserts and
applied versions go through a binary COPY (`consumers.pg_copy`), so N rows cost a few
round trips; offsets, applied versions and dead letters are written in the same
transaction as the rows they account for. The statements are composed once per process
(`consumers.pg_statements`); the bookkeeping tables they write are made by
`consumers.pg_bookkeeping`.

I/O: the psycopg connection passed in, inside its open transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Connection

from consumers import pg_statements, rejected_runs
from consumers.pg_copy import copy_upsert, staged_rows
from consumers.pg_statements import rendered
from consumers.pg_times import with_edges
from consumers.readmodel_store import (
    DeadLetter,
    PositionKey,
    RecordKey,
    Rejected,
    StoredLetter,
    TableWrites,
)
from domain.base import ERASED
from projections.base import KeyValues, Row, Scrub, SetOperation, Table

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
        self.conn.execute(rendered(_LOCK_STATUS, self.schema))
        topics, partitions = [k[0] for k in keys], [k[1] for k in keys]
        self.conn.execute(rendered(_ADD_POSITIONS, self.schema), (topics, partitions))
        lock = rendered(_LOCK_POSITIONS, self.schema)
        rows = self.conn.execute(lock, (topics, partitions)).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def positions(self) -> dict[PositionKey, int]:
        rows = self.conn.execute(rendered(_POSITIONS, self.schema)).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def load_rows(self, table: Table, keys: Sequence[KeyValues]) -> list[Row]:
        if not keys:
            return []
        columns = [list(column) for column in zip(*keys, strict=True)]
        statement = pg_statements.load_rows(self.schema, table)
        return with_edges(self.conn, lambda cur: cur.execute(statement, columns).fetchall())

    def load_applied(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        with self.conn.cursor(binary=True) as cur:
            statement = rendered(_APPLIED, self.schema)
            return dict(cur.execute(statement, (list(aggregate_ids),)).fetchall())

    def write(self, writes: Sequence[TableWrites], closing: Sequence[SetOperation]) -> None:
        for w in writes:
            if w.deletes:
                columns = [list(c) for c in zip(*w.deletes, strict=True)]
                self.conn.execute(pg_statements.delete_keys(self.schema, w.table), columns)
            if w.upserts:
                rows = staged_rows(w.table, w.upserts)
                copy_upsert(self.conn, pg_statements.upsert(self.schema, w.table, add=False), rows)
            if w.increments:
                rows = staged_rows(w.table, w.increments)
                copy_upsert(self.conn, pg_statements.upsert(self.schema, w.table, add=True), rows)
        self._set_operations(closing)

    def _set_operations(self, closing: Sequence[SetOperation]) -> None:
        """One statement per table, kind and column (`_grouped`), not one per operation."""
        for (table, column), values in _grouped(closing, self.tables):
            spec = self.tables[table]
            if column is None:
                parameters = {"erased": ERASED, "subjects": values}
                self.conn.execute(pg_statements.scrub(self.schema, spec), parameters)
            else:
                self.conn.execute(pg_statements.delete_where(self.schema, spec, column), (values,))

    def save_applied(self, versions: dict[UUID, int]) -> None:
        if versions:
            copy_upsert(self.conn, pg_statements.save_applied(self.schema), versions.items())

    def save_positions(self, positions: dict[PositionKey, int]) -> None:
        self.conn.execute(
            rendered(_SAVE_POSITIONS, self.schema),
            ([k[0] for k in positions], [k[1] for k in positions], list(positions.values())),
        )

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        statement = rendered(_ADD_DEAD_LETTERS, self.schema)
        with self.conn.cursor() as cur:
            cur.executemany(statement, [d.values() for d in letters])

    def add_rejected(self, records: Sequence[Rejected]) -> None:
        """As runs, at most `rejected_runs.ROWS` rows kept; counted one by one."""
        batch = rejected_runs.runs(records)
        rows, taken = rejected_runs.joined(batch, self._newest_rejected(batch))
        if taken:
            self.conn.execute(rendered(_DROP_REJECTED, self.schema), (taken,))
        with self.conn.cursor() as cur:
            cur.executemany(rendered(_ADD_REJECTED, self.schema), rows)
        self.conn.execute(rendered(_TRIM_REJECTED, self.schema), (rejected_runs.ROWS - 1,))
        self.conn.execute(rendered(_COUNT_REJECTED, self.schema), (len(records),))

    def _newest_rejected(
        self, batch: Sequence[rejected_runs.Run]
    ) -> dict[PositionKey, rejected_runs.StoredRun]:
        keys = sorted({(r.topic, r.partition) for r in batch})
        parameters = ([k[0] for k in keys], [k[1] for k in keys])
        rows = self.conn.execute(rendered(_NEWEST_REJECTED, self.schema), parameters)
        return {
            (r[1], r[2]): rejected_runs.StoredRun(r[0], rejected_runs.Run(*r[1:]))
            for r in rows.fetchall()
        }

    def record_progress(
        self, events: int, last_event_at: datetime | None, position: int, lag: int | None
    ) -> None:
        self.conn.execute(rendered(_PROGRESS, self.schema), (events, last_event_at, position, lag))

    def dead_letters(self) -> list[StoredLetter]:
        rows = self.conn.execute(rendered(_DEAD_LETTERS, self.schema)).fetchall()
        return [StoredLetter(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def drop_dead_letters(self, records: Sequence[RecordKey]) -> None:
        columns = [list(column) for column in zip(*records, strict=True)] or [[], [], []]
        self.conn.execute(rendered(_DROP_DEAD_LETTERS, self.schema), columns)


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
