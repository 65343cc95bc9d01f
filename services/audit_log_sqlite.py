"""`AuditLog` on the embedded SQLite store: events as canonical bytes, chain links and
signed checkpoints, in the event store's own file.

It opens its own connections to that file (plain tuples, no `sqlite3.Row`), one per
call, so the API's worker threads can share it. `exclusive()` starts `BEGIN IMMEDIATE`,
SQLite's write lock, which is what every insert takes too.

I/O: SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any
from uuid import UUID

from domain.chain_walk import Entry, Link
from domain.hashchain import canonical_bytes
from services.audit_log import StatementLog
from services.sqlite_recorder import ChainedSQLiteRecorder


class SqliteAuditLog(StatementLog):
    def __init__(
        self, recorder: ChainedSQLiteRecorder, connection: sqlite3.Connection | None = None
    ) -> None:
        self._recorder = recorder
        self._path = recorder.datastore.pool.db_name
        self._connection = connection
        names = {
            "events": recorder.events_table_name,
            "chain": recorder.chain_table,
            "checkpoints": recorder.checkpoints_table,
        }
        self._sql = {name: statement.format(**names) for name, statement in _SQL.items()}

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self._connection is not None:
            yield self._connection
            return
        with closing(sqlite3.connect(self._path, timeout=10, isolation_level=None)) as conn:
            yield conn

    def _rows(self, name: str, params: Sequence[Any] = (), *, bulk: bool = False) -> list[Any]:
        with self._connect() as conn:
            return conn.execute(self._sql[name], params).fetchall()

    def entries(self, after: int, upto: int, limit: int) -> list[Entry]:
        fromhex = bytes.fromhex
        return [
            (position, canonical_bytes(position, fromhex(aggregate), version, topic, state))
            for position, aggregate, version, topic, state in self._rows(
                "entries", (after, upto, limit)
            )
        ]

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        rows = self._rows("position_of", (aggregate_id.hex, version))
        return int(rows[0][0]) if rows else None

    def relay_position(self) -> int | None:
        return None  # the relay keeps its position in PostgreSQL only

    @contextmanager
    def exclusive(self) -> Iterator[SqliteAuditLog]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteAuditLog(self._recorder, conn)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def append_links(self, links: Iterable[Link]) -> None:
        assert self._connection is not None, "append_links runs inside exclusive()"
        self._connection.executemany(self._sql["insert_link"], links)

    def close(self) -> None:
        return None  # connections are closed after each call


_SQL = {
    "entries": "SELECT rowid, originator_id, originator_version, topic, state FROM {events}"
    " WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
    "links": "SELECT position, previous, chain FROM {chain}"
    " WHERE position > ? AND position <= ? ORDER BY position",
    "last_position": "SELECT max(coalesce((SELECT max(rowid) FROM {events}), 0),"
    " coalesce((SELECT max(position) FROM {chain}), 0))",
    "link_before": "SELECT position, chain FROM {chain} WHERE position < ?"
    " ORDER BY position DESC LIMIT 1",
    "position_of": "SELECT rowid FROM {events} WHERE originator_id = ? AND originator_version = ?",
    "count_between": "SELECT count(*) FROM {events} WHERE rowid > ? AND rowid <= ?",
    "checkpoints": "SELECT checkpoint FROM {checkpoints} WHERE position > ?"
    " ORDER BY position LIMIT ?",
    "latest_checkpoint": "SELECT checkpoint, frontier FROM {checkpoints}"
    " ORDER BY position DESC LIMIT 1",
    "add_checkpoint": "INSERT INTO {checkpoints} (position, checkpoint, frontier)"
    " VALUES (?, ?, ?) ON CONFLICT (position) DO NOTHING RETURNING position",
    "unpublished": "SELECT checkpoint FROM {checkpoints} WHERE NOT published ORDER BY position",
    "mark_published": "UPDATE {checkpoints} SET published = 1 WHERE position = ?",
    "unchained": "SELECT count(*) FROM {events} e"
    " WHERE NOT EXISTS (SELECT 1 FROM {chain} c WHERE c.position = e.rowid)",
    "drop_links": "DELETE FROM {chain}",
    "insert_link": "INSERT INTO {chain} (position, previous, chain) VALUES (?, ?, ?)",
}
"""Every statement, with the store's table names filled in per log (fixed identifiers)."""
