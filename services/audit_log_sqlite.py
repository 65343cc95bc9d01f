"""`AuditLog` on the embedded SQLite store: events as canonical bytes, chain links and
signed checkpoints, in the event store's own file.

A row is read as the walk must see it: eventsourcing finds an event by the exact text
of its `originator_id` (`UUID.hex`), so an id spelled otherwise (upper case, dashes,
spaces: all of which `bytes.fromhex` or `UUID` would still read as the same 16 bytes)
hides the event from the application while its canonical bytes, and so the chain, stay
as they were. Such a row, or one holding a cell of another storage type than the store
writes (`state` as TEXT, a REAL version, ...), comes back `Malformed`: an edit.

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

from consumers.byte_pages import notifications_within, within_params
from domain.chain_walk import Entry, Link
from domain.hashchain import canonical_bytes
from services.audit_log import Malformed, SnapshotKey, StatementLog
from services.sqlite_recorder import ChainedSQLiteRecorder


class SqliteAuditLog(StatementLog):
    def __init__(
        self,
        recorder: ChainedSQLiteRecorder,
        connection: sqlite3.Connection | None = None,
        *,
        snapshots: str = "stored_snapshots",
    ) -> None:
        self._recorder = recorder
        self._snapshots = snapshots
        self._path = recorder.datastore.pool.db_name
        self._connection = connection
        names = {
            "events": recorder.events_table_name,
            "chain": recorder.chain_table,
            "checkpoints": recorder.checkpoints_table,
            "snapshots": snapshots,
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

    def entries(
        self, after: int, upto: int, limit: int, max_bytes: int | None = None
    ) -> list[Entry]:
        if max_bytes is None:
            rows = self._rows("entries", (after, upto, limit))
        else:
            rows = self._rows("entries_within", (*within_params(after + 1, limit, max_bytes), upto))
        return [self._entry(row) for row in rows]

    def _entry(self, row: tuple[Any, ...]) -> Entry:
        canonical = _canonical(*row[:5]) if row[5] else None
        return row[0], self._malformed(row[0]) if canonical is None else canonical

    def _malformed(self, position: int) -> Malformed:
        """The row at `position`, read again to say how it is not in its stored form."""
        ((aggregate, version, topic, state, types),) = self._rows("row_types", (position,))
        aggregate, topic = aggregate or b"", (topic or b"").decode("utf-8", "replace")
        raw, number = _id_bytes(aggregate), version if isinstance(version, int) else 0
        named = raw or _lenient_id(aggregate)
        canonical = canonical_bytes(position, named, number, topic, state or b"")
        if types != _STORED_TYPES:
            wrong = zip(_COLUMNS, types.split(), _STORED_TYPES.split(), strict=True)
            cells = ", ".join(f"{c} is {t}, not {w}" for c, t, w in wrong if t != w)
            return Malformed(canonical, f"a cell is not of the type the store writes ({cells})")
        if raw is None:
            return Malformed(canonical, f"originator_id {aggregate.decode('utf-8', 'replace')!r}"
                             " is not an aggregate id as the store spells it (UUID.hex): the"
                             " application no longer finds this event")  # fmt: skip
        return Malformed(canonical, f"topic {topic!r} is not UTF-8 text")

    def _stored_id(self, aggregate_id: UUID) -> str:
        return aggregate_id.hex

    def snapshot_keys(self) -> list[SnapshotKey]:
        rows = self._rows("snapshot_keys")
        return [(_stored_uuid(aggregate), version, topic) for aggregate, version, topic in rows]

    def relay_position(self) -> int | None:
        return None  # the relay keeps its position in PostgreSQL only

    @contextmanager
    def exclusive(self) -> Iterator[SqliteAuditLog]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteAuditLog(self._recorder, conn, snapshots=self._snapshots)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def append_links(self, links: Iterable[Link]) -> None:
        assert self._connection is not None, "append_links runs inside exclusive()"
        self._connection.executemany(self._sql["insert_link"], links)

    def close(self) -> None:
        return None  # connections are closed after each call


def _canonical(
    position: int, aggregate: bytes, version: int, topic: bytes, state: bytes
) -> bytes | None:
    """The canonical bytes of a row of the stored types, None unless its id is spelled
    exactly as the store writes it and its topic is UTF-8."""
    raw = _id_bytes(aggregate)
    try:
        text = topic.decode()
    except UnicodeDecodeError:
        return None
    return None if raw is None else canonical_bytes(position, raw, version, text, state)


def _id_bytes(aggregate: bytes) -> bytes | None:
    """The 16 bytes of an id stored as `UUID.hex` writes it, else None."""
    try:
        raw = bytes.fromhex(aggregate.decode("ascii"))
    except ValueError:  # not ASCII, not hex digits
        return None
    return raw if len(raw) == 16 and raw.hex().encode() == aggregate else None


def _stored_uuid(aggregate: bytes) -> UUID | None:
    """The id of a row the application finds by `UUID.hex`, None for another spelling."""
    raw = _id_bytes(aggregate)
    return None if raw is None else UUID(bytes=raw)


def _lenient_id(aggregate: bytes) -> bytes:
    """The 16 bytes of an id however spelled (`UUID` reads case, dashes, braces), to name
    the event in a report; zeros if it is no id at all."""
    try:
        return UUID(aggregate.decode("ascii")).bytes
    except ValueError:
        return bytes(16)


_COLUMNS = ("originator_id", "originator_version", "topic", "state")
_STORED_TYPES = "text integer text blob"
_AS_STORED = (
    "rowid, CAST(originator_id AS BLOB), originator_version, CAST(topic AS BLOB),"
    " CAST(state AS BLOB)"
)
"""Text as its bytes (a cell of invalid UTF-8 is read, not raised on), and whether every
cell is of the type the store writes (`_STORED_TYPES`)."""
_TYPED = (
    "typeof(originator_id) = 'text' AND typeof(originator_version) = 'integer'"
    " AND typeof(topic) = 'text' AND typeof(state) = 'blob'"
)
_SQL = {
    "entries": f"SELECT {_AS_STORED}, {_TYPED} FROM {{events}}"
    " WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
    "entries_within": f"SELECT {_AS_STORED}, {_TYPED} FROM"
    f" ({notifications_within('sqlite', '{events}', 'rowid', '?')}) AS page"
    " WHERE rowid <= ? ORDER BY rowid",
    "row_types": "SELECT CAST(originator_id AS BLOB), originator_version, CAST(topic AS BLOB),"
    " CAST(state AS BLOB), typeof(originator_id) || ' ' || typeof(originator_version)"
    " || ' ' || typeof(topic) || ' ' || typeof(state) FROM {events} WHERE rowid = ?",
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
    "snapshot_keys": "SELECT CAST(originator_id AS BLOB), originator_version, topic"
    " FROM {snapshots}",
    "snapshot_state": "SELECT state FROM {snapshots}"
    " WHERE originator_id = ? AND originator_version = ?",
    "aggregate_events": "SELECT originator_version, topic, state FROM {events}"
    " WHERE originator_id = ? AND originator_version > ? AND originator_version <= ?"
    " ORDER BY originator_version LIMIT ?",
    "first_stray": "SELECT rowid, originator_id, originator_version, topic FROM {events}"
    " WHERE rowid <= 0 ORDER BY rowid LIMIT 1",  # a rowid is never NULL
    "insert_link": "INSERT INTO {chain} (position, previous, chain) VALUES (?, ?, ?)",
}
"""Every statement, with the store's table names filled in per log (fixed identifiers)."""
