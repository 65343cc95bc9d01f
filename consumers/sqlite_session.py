"""One SQLite read-model transaction (see `consumers.store_sqlite`): the writes of a
batch and the bookkeeping beside them (`consumers.sqlite_tables`, which creates those
tables), through the names and values of `consumers.sqlite_values`.

I/O: the sqlite3 connection passed in, inside its open transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from consumers import rejected_runs
from consumers.readmodel_store import (
    DeadLetter,
    PositionKey,
    RecordKey,
    Rejected,
    StoredLetter,
    TableWrites,
)
from consumers.sqlite_values import from_sqlite, ident, to_sqlite
from domain.base import ERASED
from projections.base import KeyValues, Row, Scrub, SetOperation, Table

_CHUNK = 300


class SqliteSession:
    """`consumers.readmodel_store.Session` inside an open SQLite transaction."""

    def __init__(self, conn: sqlite3.Connection, prefix: str, tables: Sequence[Table]) -> None:
        self.conn = conn
        self.prefix = prefix
        self.tables = {t.name: t for t in tables}

    def _t(self, name: str) -> str:
        return ident(f"{self.prefix}__{name}")

    def lock_positions(self, keys: Sequence[PositionKey]) -> dict[PositionKey, int]:
        """The transaction is BEGIN IMMEDIATE: the database is already write-locked."""
        stored = self.positions()
        return {key: stored[key] for key in keys if key in stored}

    def positions(self) -> dict[PositionKey, int]:
        rows = self.conn.execute(
            f"SELECT topic, partition, next_offset FROM {self._t('_positions')}"
        )
        return {(r[0], r[1]): r[2] for r in rows.fetchall()}

    def load_rows(self, table: Table, keys: Sequence[KeyValues]) -> list[Row]:
        rows: list[Row] = []
        width = len(table.key)
        tuple_sql = "(" + ", ".join("?" * width) + ")"
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            values = ", ".join([tuple_sql] * len(chunk))
            query = (
                f"SELECT * FROM {self._t(table.name)} WHERE ({', '.join(map(ident, table.key))})"
                f" IN (VALUES {values})"
            )
            params = [to_sqlite(v) for key in chunk for v in key]
            rows.extend(from_sqlite(table, self.conn.execute(query, params)))
        return rows

    def load_applied(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        found: dict[UUID, int] = {}
        for start in range(0, len(aggregate_ids), _CHUNK):
            chunk = [str(a) for a in aggregate_ids[start : start + _CHUNK]]
            query = (
                f"SELECT aggregate_id, version FROM {self._t('_applied')}"
                f" WHERE aggregate_id IN ({', '.join('?' * len(chunk))})"
            )
            found.update((UUID(r[0]), r[1]) for r in self.conn.execute(query, chunk))
        return found

    def write(self, writes: Sequence[TableWrites], closing: Sequence[SetOperation]) -> None:
        for w in writes:
            if w.deletes:
                where = " AND ".join(f"{ident(k)} = ?" for k in w.table.key)
                self.conn.executemany(
                    f"DELETE FROM {self._t(w.table.name)} WHERE {where}",
                    [[to_sqlite(v) for v in key] for key in w.deletes],
                )
            if w.upserts:
                self._upsert(w.table, w.upserts, add=False)
            if w.increments:
                self._upsert(w.table, w.increments, add=True)
        for operation in closing:
            self._set_operation(operation)

    def _upsert(self, table: Table, rows: list[Row], *, add: bool) -> None:
        if add and any(c.type == "numeric" for c in table.columns):
            rows, add = self._added(table, rows), False
        names = table.column_names
        others = [n for n in names if n not in table.key]
        target = self._t(table.name)
        updates = ", ".join(
            f"{ident(n)} = {target}.{ident(n)} + excluded.{ident(n)}"
            if add
            else f"{ident(n)} = excluded.{ident(n)}"
            for n in others
        )
        action = f"DO UPDATE SET {updates}" if others else "DO NOTHING"
        self.conn.executemany(
            f"INSERT INTO {target} ({', '.join(map(ident, names))})"
            f" VALUES ({', '.join('?' * len(names))})"
            f" ON CONFLICT ({', '.join(map(ident, table.key))}) {action}",
            [[to_sqlite(row[n]) for n in names] for row in rows],
        )

    def _added(self, table: Table, increments: list[Row]) -> list[Row]:
        """The rows `increments` (one per key) leave, added up here from the stored rows:
        SQLite would add a `numeric` column (TEXT) as REAL, leaving 1000000000000.3 where
        PostgreSQL's numeric keeps 1000000000000.3003; Decimals add exactly."""
        key_of = table.key_of
        stored = {key_of(r): r for r in self.load_rows(table, [key_of(r) for r in increments])}
        return [_plus(table, stored.get(key_of(row)), row) for row in increments]

    def _set_operation(self, op: SetOperation) -> None:
        if not isinstance(op, Scrub):
            self.conn.execute(
                f"DELETE FROM {self._t(op.table)} WHERE {ident(op.column)} = ?",
                (to_sqlite(op.value),),
            )
            return
        spec = self.tables[op.table]
        assert spec.subject is not None
        sets = ", ".join(
            f"{ident(c)} = CASE WHEN {ident(c)} IS NULL THEN NULL ELSE :erased END"
            for c in spec.personal
        )
        self.conn.execute(
            f"UPDATE {self._t(op.table)} SET {sets} WHERE {ident(spec.subject)} = :subject",
            {"erased": ERASED, "subject": to_sqlite(op.subject)},
        )

    def save_applied(self, versions: dict[UUID, int]) -> None:
        self.conn.executemany(
            f"INSERT INTO {self._t('_applied')} VALUES (?, ?) ON CONFLICT (aggregate_id)"
            " DO UPDATE SET version = max(version, excluded.version)",
            [(str(k), v) for k, v in versions.items()],
        )

    def save_positions(self, positions: dict[PositionKey, int]) -> None:
        self.conn.executemany(
            f"INSERT OR REPLACE INTO {self._t('_positions')} VALUES (?, ?, ?)",
            [(k[0], k[1], v) for k, v in positions.items()],
        )

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.conn.executemany(
            f"INSERT INTO {self._t('_dead_letters')} (event_id, topic, partition, kafka_offset,"
            " position, aggregate_id, aggregate_version, event_type, error, payload)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [tuple(map(to_sqlite, d.values())) for d in letters],
        )

    def add_rejected(self, records: Sequence[Rejected]) -> None:
        """As runs, at most `rejected_runs.ROWS` rows kept; counted one by one."""
        batch = rejected_runs.runs(records)
        rows, taken = rejected_runs.joined(batch, self._newest_rejected())
        table = self._t("_rejected")
        self.conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in taken])
        self.conn.executemany(
            f"INSERT INTO {table} (topic, partition, kafka_offset, last_offset, position,"
            " reason, records, at, last_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, coalesce(?, datetime('now')), datetime('now'))",
            rows,
        )
        self.conn.execute(
            f"DELETE FROM {table} WHERE id < (SELECT id FROM {table} ORDER BY id DESC"
            " LIMIT 1 OFFSET ?)",
            (rejected_runs.ROWS - 1,),
        )
        self.conn.execute(
            f"UPDATE {self._t('_status')} SET rejected = rejected + ? WHERE id = 1", (len(records),)
        )

    def _newest_rejected(self) -> dict[PositionKey, rejected_runs.StoredRun]:
        """Each partition's newest row (of at most `rejected_runs.ROWS`)."""
        table = self._t("_rejected")
        rows = self.conn.execute(
            "SELECT id, topic, partition, kafka_offset, coalesce(last_offset, kafka_offset),"
            f" position, reason, records, at FROM {table}"
            f" WHERE id IN (SELECT max(id) FROM {table} GROUP BY topic, partition)"
        )
        return {
            (r[1], r[2]): rejected_runs.StoredRun(r[0], rejected_runs.Run(*r[1:]))
            for r in rows.fetchall()
        }

    def record_progress(
        self, events: int, last_event_at: datetime | None, position: int, lag: int | None
    ) -> None:
        self.conn.execute(
            f"UPDATE {self._t('_status')} SET events = events + ?,"
            " last_event_at = coalesce(?, last_event_at), last_position = max(last_position, ?),"
            " lag = coalesce(?, lag), updated_at = datetime('now') WHERE id = 1",
            (events, to_sqlite(last_event_at), position, lag),
        )

    def dead_letters(self) -> list[StoredLetter]:
        rows = self.conn.execute(
            f"SELECT topic, partition, kafka_offset, position, payload"
            f" FROM {self._t('_dead_letters')} ORDER BY id"
        )
        return [StoredLetter(*row) for row in rows.fetchall()]

    def drop_dead_letters(self, records: Sequence[RecordKey]) -> None:
        self.conn.executemany(
            f"DELETE FROM {self._t('_dead_letters')}"
            " WHERE topic = ? AND partition = ? AND kafka_offset = ?",
            records,
        )


def _plus(table: Table, stored: Row | None, increment: Row) -> Row:
    """`increment` added to the `stored` row's counters, as SQL adds (NULL + x is NULL)."""
    if stored is None:
        return increment
    return {n: v if n in table.key else _sum(stored[n], v) for n, v in increment.items()}


def _sum(stored: Any, delta: Any) -> Any:
    return None if stored is None or delta is None else stored + delta
