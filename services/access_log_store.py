"""Where the access log lives: PostgreSQL beside the event store, or `access.db` (SQLite)
in the embedded data dir. One adapter per database, the same statements.

Tables: `crm_access_log(position, previous, chain, record, principal, at)` (append-only;
`record` is the stored JSON, `chain` its link), `crm_access_subjects(customer_id,
position)` (which customers each record names, for the auditor's query) and
`crm_access_published(topic, position)` (how far the relay published; `crm audit
verify-access` holds the log to reach it). An append holds the log's write lock
(PostgreSQL: LOCK TABLE; SQLite: BEGIN IMMEDIATE) while it reads the head and inserts,
so positions follow commit order across processes and every link continues the one
before it.

I/O: PostgreSQL or SQLite.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg_pool import ConnectionPool

from consumers.pg_ddl import create_tables
from consumers.sqlite_tx import immediate
from domain.chain_walk import Break, BreakKind, Entry, Link
from domain.hashchain import GENESIS, chain_rows
from services.access_log import AccessStore, canonical, decode

Row = tuple[int, bytes]

_PG_DDL = """
CREATE TABLE IF NOT EXISTS crm_access_log (
    position bigint PRIMARY KEY, previous bigint NOT NULL, chain bytea NOT NULL,
    record bytea NOT NULL, principal text NOT NULL, at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS crm_access_log_by_principal ON crm_access_log (principal, position);
CREATE TABLE IF NOT EXISTS crm_access_subjects (
    customer_id uuid NOT NULL, position bigint NOT NULL, PRIMARY KEY (customer_id, position)
);
CREATE TABLE IF NOT EXISTS crm_access_published (topic text PRIMARY KEY, position bigint NOT NULL)
"""
_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS crm_access_log (
    position INTEGER PRIMARY KEY, previous INTEGER NOT NULL, chain BLOB NOT NULL,
    record BLOB NOT NULL, principal TEXT NOT NULL, at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS crm_access_log_by_principal ON crm_access_log (principal, position);
CREATE TABLE IF NOT EXISTS crm_access_subjects (
    customer_id TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (customer_id, position)
);
CREATE TABLE IF NOT EXISTS crm_access_published (topic TEXT PRIMARY KEY, position INTEGER NOT NULL)
"""
_HEAD = "SELECT position, chain FROM crm_access_log ORDER BY position DESC LIMIT 1"
_INSERT = "INSERT INTO crm_access_log VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
_SQLITE_SUBJECTS = (
    "INSERT INTO crm_access_subjects SELECT value, ? FROM json_each(?, '$.customers')"
)
"""A record's customers, in one statement per record, as on PostgreSQL: SQLite reads them
out of the record (spelled as `str(UUID)` spells them). A row per customer released the
GIL for each of a page's fifty, and the API's event loop paid for handing it over (its
CPU a page: 1,161 -> 1,044 us): the embedded department page served 782-853 pages/s
before, 984-1,044 after."""
_PG_APPEND = """
WITH written AS (
    SELECT %(after)s::bigint + n AS position, %(after)s::bigint + n - 1 AS previous,
        substring(%(chains)s::bytea FROM n::int * 32 - 31 FOR 32) AS chain,
        convert_to(record::text, 'UTF8') AS record, record::jsonb AS json
    FROM json_array_elements(%(records)s::json) WITH ORDINALITY AS batch(record, n)
), logged AS (
    INSERT INTO crm_access_log
    SELECT position, previous, chain, record, json->>'principal', (json->>'at')::timestamptz
    FROM written
)
INSERT INTO crm_access_subjects
SELECT customer::uuid, position
FROM written, jsonb_array_elements_text(json->'customers') AS customer
"""  # A batch is three values: the records as one JSON array (`json` keeps each element's
# text, so each record is stored byte for byte as it was chained), their links end to
# end, and the head they follow. The server reads principal, time and customers out of
# each record. Sending rows or arrays cost the API's process Python for every row or
# element: ~135 us for a page's record naming 50 customers, ~5 us for one.
_RANGE = (
    "SELECT position, record FROM crm_access_log WHERE position > {p} AND position <= {p}"
    " ORDER BY position LIMIT {p}"
)
_LINKS = (
    "SELECT position, previous, chain FROM crm_access_log"
    " WHERE position > {p} AND position <= {p} ORDER BY position"
)
_FILED = (
    "SELECT position, principal, at FROM crm_access_log"
    " WHERE position > {p} AND position <= {p} ORDER BY position"
)
_SUBJECTS = (
    "SELECT position, customer_id FROM crm_access_subjects"
    " WHERE position > {p} AND position <= {p} ORDER BY position"
)
_PUBLISHED = "SELECT position FROM crm_access_published WHERE topic = {p}"
_PUBLISHED_ALL = "SELECT position FROM crm_access_published"
_LAST = "SELECT max(position) FROM crm_access_log"
_MARK = (
    "INSERT INTO crm_access_published VALUES ({p}, {p})"
    " ON CONFLICT (topic) DO UPDATE SET position = excluded.position"
)


def _query(placeholder: str, customer: bool, principal: bool, start: bool, end: bool) -> str:
    p = placeholder
    return (
        f"SELECT position, record FROM crm_access_log WHERE position > {p}"
        + (f" AND position IN (SELECT position FROM crm_access_subjects WHERE customer_id = {p})"
           if customer else "")
        + (f" AND principal = {p}" if principal else "")
        + (f" AND at >= {p}" if start else "")
        + (f" AND at < {p}" if end else "")
        + f" ORDER BY position LIMIT {p}"
    )  # fmt: skip


class _Statements:
    """What both stores do alike, given how to run a statement (`_run`) and to hold the
    write lock (`_locked`)."""

    placeholder = "%s"

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError("each store runs its statements its own way")

    def _sql(self, template: str) -> str:
        return template.format(p=self.placeholder)

    def _linked(self, head: tuple[int, bytes] | None, records: Sequence[bytes]) -> list[Any]:
        """The log's rows (position, previous, chain, record) continuing `head`."""
        after, chain = head if head is not None else (0, GENESIS)
        positions = list(range(after + 1, after + 1 + len(records)))
        canonicals = [canonical(p, r) for p, r in zip(positions, records, strict=True)]
        links = chain_rows(after, chain, positions, canonicals)
        return [(*link, record) for link, record in zip(links, records, strict=True)]

    def select(
        self,
        *,
        customer: UUID | None = None,
        principal: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[Row]:
        """Records naming `customer` (and read by `principal`, at or after `start`, before
        `end`), after position `after`, oldest first."""
        given = {"customer": self._id(customer), "principal": principal}
        given |= {"start": _utc(start), "end": _utc(end)}
        sql = _query(self.placeholder, *(value is not None for value in given.values()))
        params = [after, *(value for value in given.values() if value is not None), limit]
        return [(row[0], _bytes(row[1])) for row in self._run(sql, params)]

    def entries(self, after: int, upto: int, limit: int) -> list[Entry]:
        rows = self._run(self._sql(_RANGE), (after, upto, limit))
        return [(position, canonical(position, _bytes(record))) for position, record in rows]

    def links(self, after: int, upto: int) -> list[Link]:
        rows = self._run(self._sql(_LINKS), (after, upto))
        return [(position, previous, _bytes(chain)) for position, previous, chain in rows]

    def misfiled(self, entries: Sequence[Entry]) -> Break | None:
        """The first of `entries` (chained records, as `entries` gives them) whose columns
        that `select` filters on (principal, at, the customers in `crm_access_subjects`)
        are not what the record itself says: none of them is chained, so a changed or
        deleted one hides the record from an auditor's query while the chain holds."""
        if not entries:
            return None
        after, upto = entries[0][0] - 1, entries[-1][0]
        filed = {row[0]: row[1:] for row in self._run(self._sql(_FILED), (after, upto))}
        subjects: dict[int, set[str]] = {}
        for position, customer in self._run(self._sql(_SUBJECTS), (after, upto)):
            subjects.setdefault(position, set()).add(str(customer))
        for position, canonical_bytes in entries:
            record = decode(position, canonical_bytes[8:]).record
            expected = (record.principal, self._at(record.at))
            customers = {str(self._id(customer)) for customer in record.customers}
            found = filed.get(position)
            if found != expected or subjects.get(position, set()) != customers:
                return _misfiled(position, expected, found, customers, subjects.get(position))
        return None

    def _at(self, instant: datetime) -> Any:
        return instant

    def records(self, after: int, limit: int) -> list[Row]:
        """Stored records after `after` (for publishing), oldest first."""
        rows = self._run(self._sql(_RANGE), (after, (1 << 63) - 1, limit))
        return [(row[0], _bytes(row[1])) for row in rows]

    def published(self, topic: str) -> int:
        rows = self._run(self._sql(_PUBLISHED), (topic,))
        return int(rows[0][0]) if rows else 0

    def mark_published(self, topic: str, position: int) -> None:
        self._run(self._sql(_MARK), (topic, position))

    def last_position(self) -> int:
        """The newest record's position (0: none)."""
        rows = self._run(_LAST)
        return int(rows[0][0] or 0)

    def highest_published(self) -> int | Break:
        """The highest position the relay recorded as published, to any topic prefix
        (every one was published from this store); 0 before it published any. A value
        that is no position (SQLite's INTEGER column takes text, which its `max` ranks
        above every number) is a break: the relay writes none (it was a traceback)."""
        values = [row[0] for row in self._run(_PUBLISHED_ALL)]
        if odd := [v for v in values if type(v) is not int or v < 0]:
            return Break(
                kind=BreakKind.EDITED, position=0,
                detail=f"crm_access_published holds {str(odd[0])[:40]!r}, which is no position:"
                " the relay writes none",
            )  # fmt: skip
        return max(values, default=0)

    def _id(self, customer: UUID | None) -> Any:
        return customer


class PostgresAccessStore(_Statements):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with pool.connection() as conn:
            create_tables(conn, _PG_DDL)

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._pool.connection() as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def append(self, records: Sequence[bytes]) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("LOCK TABLE crm_access_log IN EXCLUSIVE MODE")
            head = conn.execute(_HEAD).fetchone()
            rows = self._linked(None if head is None else (head[0], bytes(head[1])), records)
            batch = {
                "after": rows[0][1],
                "chains": b"".join(row[2] for row in rows),
                "records": (b"[" + b",".join(records) + b"]").decode(),
            }
            conn.execute(_PG_APPEND, batch)

    def close(self) -> None:
        """The pool is the runtime's: nothing of its own to close."""


class SqliteAccessStore(_Statements):
    """In `access.db`, its own file, so recording never waits for the event store."""

    placeholder = "?"

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        self._conn.executescript(_SQLITE_DDL)

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, [_sqlite(v) for v in params]).fetchall()

    def append(self, records: Sequence[bytes]) -> None:
        with self._lock, immediate(self._conn) as conn:
            head = conn.execute(_HEAD).fetchone()
            rows, subjects = [], []
            for position, previous, chain, record in self._linked(head, records):
                stored = decode(position, record).record
                rows.append((position, previous, chain, record, stored.principal, stored.at))
                subjects.append((position, record.decode()))
            conn.executemany(self._sql(_INSERT), [[_sqlite(v) for v in row] for row in rows])
            conn.executemany(_SQLITE_SUBJECTS, subjects)

    def _id(self, customer: UUID | None) -> Any:
        return None if customer is None else str(customer)

    def _at(self, instant: datetime) -> Any:
        return _sqlite(instant)  # as `append` files it: the text `at >= ?` compares

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _misfiled(
    position: int,
    expected: tuple[str, Any],
    found: tuple[Any, ...] | None,
    customers: set[str],
    filed: set[str] | None,
) -> Break:
    if found is None or found[0] != expected[0]:
        column = f"principal {None if found is None else found[0]!r}, not {expected[0]!r}"
    elif found[1] != expected[1]:
        column = f"at {found[1]!s}, not {expected[1]!s}"
    else:
        column = f"customers {sorted(filed or ())}, not {sorted(customers)}"
    return Break(
        kind=BreakKind.EDITED,
        position=position,
        detail=f"the record is filed under {column} (what it says): queries on the"
        " access log no longer find it where it belongs",
    )


def _bytes(value: Any) -> bytes:
    """A stored record or link as bytes (a tampered SQLite cell may come back as text)."""
    return value.encode() if isinstance(value, str) else bytes(value)


def _utc(instant: datetime | None) -> datetime | None:
    return None if instant is None else instant.astimezone(UTC)


def _sqlite(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def open_access_store(pool: ConnectionPool | None, data_dir: Path) -> AccessStore:
    """PostgreSQL when a pool is configured, else `access.db` in the embedded data dir."""
    if pool is not None:
        return PostgresAccessStore(pool)
    return SqliteAccessStore(data_dir / "access.db")
