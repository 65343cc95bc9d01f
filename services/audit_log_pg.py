"""`AuditLog` on PostgreSQL: the events as canonical bytes (built by the server with the
insert's own `CANONICAL_SQL`), their chain links and the signed checkpoints.

Reads use binary tuples from the event store's own pool: a verify reads every event,
and one bytea per row is the cheapest thing to hand to Python. `exclusive()` takes the
same EXCLUSIVE table lock as every insert, so nothing is written meanwhile.

A log with bounded lock waits (`with_bounded_lock_waits`: the audit signer of `crm relay`
and the relay's remembered head) runs each statement in a transaction whose lock waits
end after `consumers.pg_lock_wait.LOCK_TIMEOUT_S` (`LockWaitTimedOut`, naming who holds
a lock on its tables): red team, a `LOCK TABLE` on the checkpoints table held the
signer's thread, and the relay's stop, for as long as it was held. The process tries
again in its own loop. Other readers (`crm audit verify`, the API) wait as before.

Every field of the canonical bytes has one stored form here: the id is a `uuid` column
(no other spelling of it can be stored), the version `bigint`, the topic `text` and the
state `bytea`, each compared by eventsourcing exactly as the canonical bytes take it.
So the SQLite store's `Malformed` rows have no counterpart on PostgreSQL.

I/O: PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from consumers.byte_pages import notifications_within, within_params
from consumers.pg_lock_wait import bounded
from domain.chain_walk import Entry, Link
from services.audit_log import AuditLog, SnapshotKey, StatementLog
from services.pg_batch_recorder import CANONICAL_SQL, BatchInsertRecorder, connect_kwargs


class PostgresAuditLog(StatementLog):
    def __init__(
        self,
        recorder: BatchInsertRecorder,
        connection: psycopg.Connection[Any] | None = None,
        *,
        snapshots: str = "crm_snapshots",
    ) -> None:
        self._recorder = recorder
        self._snapshots = snapshots
        self._bulk = connection
        self._bulk_lock = threading.Lock()
        self._owns_bulk = connection is None
        self.bounded_waits = False
        """Whether each statement's lock waits are bounded (`with_bounded_lock_waits`)."""
        self._tables = [
            table.as_string(None)
            for table in (recorder.events_table, recorder.chain_table, recorder.checkpoints_table)
        ]
        names = {
            "events": recorder.events_table,
            "chain": recorder.chain_table,
            "checkpoints": recorder.checkpoints_table,
            "snapshots": Identifier(recorder.datastore.schema, snapshots),
            "canonical": SQL(CANONICAL_SQL),
        }
        self._sql: dict[str, bytes] = {
            name: SQL(statement).format(**names).as_bytes() for name, statement in _SQL.items()
        }

    def _rows(
        self, name: str, params: Sequence[Any] = (), *, bulk: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run one statement: page reads (`bulk`) on this log's own connection, where
        they stay prepared; the rest on a connection of the event store's pool."""
        if bulk or self._bulk is not None:
            with self._bulk_lock:
                return self._run(self._bulk_connection(), name, params)
        with self._recorder.datastore.get_connection() as conn:
            return self._run(conn, name, params)

    def _run(self, conn: psycopg.Connection[Any], name: str, params: Sequence[Any]) -> list[Any]:
        if not self.bounded_waits:
            return _run(conn, self._sql[name], params)
        with bounded(conn, f"audit log statement {name} not run", self._tables):
            return _run(conn, self._sql[name], params)

    def _bulk_connection(self) -> psycopg.Connection[Any]:
        if self._bulk is None or self._bulk.closed:
            self._bulk = psycopg.connect(autocommit=True, **connect_kwargs(self._recorder))
        return self._bulk

    def entries(
        self, after: int, upto: int, limit: int, max_bytes: int | None = None
    ) -> list[Entry]:
        if max_bytes is None:
            return self._rows("entries", (after, upto, limit), bulk=True)
        params = (*within_params(after + 1, limit, max_bytes), upto)
        return self._rows("entries_within", params, bulk=True)

    def _stored_id(self, aggregate_id: UUID) -> UUID:
        return aggregate_id

    def snapshot_keys(self) -> list[SnapshotKey]:
        return self._rows("snapshot_keys")

    def relay_position(self) -> int | None:
        if self._rows("relay_table")[0][0] is None:
            return None
        rows = self._rows("relay_position")
        return int(rows[0][0]) if rows else None

    @contextmanager
    def exclusive(self) -> Iterator[PostgresAuditLog]:
        with (
            psycopg.connect(**connect_kwargs(self._recorder)) as conn,
            conn.transaction(),
        ):
            for statement in self._recorder.lock_table_statements:
                conn.execute(statement)
            yield PostgresAuditLog(self._recorder, conn, snapshots=self._snapshots)

    def append_links(self, links: Iterable[Link]) -> None:
        assert self._bulk is not None, "append_links runs inside exclusive()"
        assert not self._owns_bulk, "append_links runs inside exclusive()"
        copy = SQL("COPY {} (position, previous, chain) FROM STDIN (FORMAT BINARY)")
        with (
            self._bulk.cursor() as cursor,
            cursor.copy(copy.format(self._recorder.chain_table)) as writer,
        ):
            writer.set_types(["int8", "int8", "bytea"])
            for row in links:
                writer.write_row(row)

    def close(self) -> None:
        """Close the page-reading connection (the pool belongs to the event store)."""
        if self._owns_bulk and self._bulk is not None:
            self._bulk.close()
            self._bulk = None


def with_bounded_lock_waits(log: AuditLog) -> AuditLog:
    """`log`, its statements' lock waits bounded if it is PostgreSQL's (SQLite's busy
    wait is bounded already)."""
    if isinstance(log, PostgresAuditLog):
        log.bounded_waits = True
    return log


def _run(conn: psycopg.Connection[Any], statement: bytes, params: Sequence[Any]) -> list[Any]:
    with conn.cursor(binary=True, row_factory=tuple_row) as cursor:
        cursor.execute(statement, params, prepare=True)
        return cursor.fetchall() if cursor.description else []


_SQL: dict[str, LiteralString] = {
    "entries": "SELECT notification_id, {canonical} FROM {events}"
    " WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s",
    "entries_within": "SELECT notification_id, {canonical} FROM"
    f" ({notifications_within('postgresql', '{events}', 'notification_id', '%s')}) AS page"
    " WHERE notification_id <= %s ORDER BY notification_id",
    "links": "SELECT position, previous, chain FROM {chain}"
    " WHERE position > %s AND position <= %s ORDER BY position",
    "last_position": "SELECT greatest((SELECT max(notification_id) FROM {events}),"
    " (SELECT max(position) FROM {chain}), 0)",
    "link_before": "SELECT position, chain FROM {chain} WHERE position < %s"
    " ORDER BY position DESC LIMIT 1",
    "position_of": "SELECT notification_id FROM {events}"
    " WHERE originator_id = %s AND originator_version = %s",
    "count_between": "SELECT count(*) FROM {events}"
    " WHERE notification_id > %s AND notification_id <= %s",
    "checkpoints": "SELECT checkpoint FROM {checkpoints} WHERE position > %s"
    " ORDER BY position LIMIT %s",
    "latest_checkpoint": "SELECT checkpoint, frontier FROM {checkpoints}"
    " ORDER BY position DESC LIMIT 1",
    "add_checkpoint": "INSERT INTO {checkpoints} (position, checkpoint, frontier)"
    " VALUES (%s, %s, %s) ON CONFLICT (position) DO NOTHING RETURNING position",
    "unpublished": "SELECT checkpoint FROM {checkpoints} WHERE NOT published ORDER BY position",
    "mark_published": "UPDATE {checkpoints} SET published = true WHERE position = %s",
    "relay_table": "SELECT to_regclass('crm_relay_position')::text",
    "relay_position": "SELECT position FROM crm_relay_position",
    "unchained": "SELECT count(*) FROM {events} e"
    " WHERE NOT EXISTS (SELECT FROM {chain} c WHERE c.position = e.notification_id)",
    "drop_links": "DELETE FROM {chain}",
    "snapshot_keys": "SELECT originator_id, originator_version, topic FROM {snapshots}",
    "snapshot_state": "SELECT state FROM {snapshots}"
    " WHERE originator_id = %s AND originator_version = %s",
    "aggregate_events": "SELECT originator_version, topic, state FROM {events}"
    " WHERE originator_id = %s AND originator_version > %s AND originator_version <= %s"
    " ORDER BY originator_version LIMIT %s",
    "first_stray": "SELECT notification_id, originator_id, originator_version, topic"
    " FROM {events} WHERE notification_id <= 0 OR notification_id IS NULL"
    " ORDER BY notification_id NULLS FIRST LIMIT 1",
}
"""Every statement, composed once per log with the store's table names."""
