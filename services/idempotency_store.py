"""Where Idempotency-Keys are kept: table `crm_idempotency` in PostgreSQL, or
`idempotency.db` (SQLite) in the embedded data dir, the same statements on both (`%s`
placeholders; the SQLite adapter rewrites them). Each operation is one transaction.

A row is a key of one principal (`owner`), known by its keyed digest (`key`, never the
key as sent; rows of releases before digests are given theirs when the table is
opened: `digest_sent_keys`): the request's fingerprint, the attempt
holding it (`holder`) and its lease, the key's `reservation` and when it was made
(`reserved_at`, seconds since the epoch), and once completed its answer (`status`,
`body`). Tables made before leases and retention are upgraded when opened: their keys'
age comes from `created_at`, and their keys in flight count as leases run out.
I/O: PostgreSQL or SQLite.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, LiteralString, Protocol

import msgspec
from psycopg_pool import ConnectionPool

from consumers.pg_ddl import create_tables
from consumers.sqlite_tx import immediate


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds which key: a principal's key, held by one attempt. The table knows the
    key by its keyed digest (`event_key`, `services.idempotency.Idempotency.event_key`),
    never as sent: a client may name a request after its person."""

    owner: str
    event_key: str
    holder: str


class KeyRow(msgspec.Struct, frozen=True, kw_only=True):
    """A key's row as stored (`status` and `body` set once its command completed)."""

    fingerprint: str
    status: int | None
    body: bytes | None
    holder: str | None
    reservation: str | None
    reserved_at: float
    lease_until: float | None = None  # while held: till when, unless its holder renews


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


Run = Callable[[LiteralString, tuple[Any, ...]], Cursor]


class Database(Protocol):
    def transaction(self) -> AbstractContextManager[Run]:
        """One transaction; statements use `%s` placeholders."""
        ...


_FORGET_KEY: LiteralString = (
    "DELETE FROM crm_idempotency WHERE owner = %s AND key = %s AND reserved_at < %s"
)
_INSERT: LiteralString = (
    "INSERT INTO crm_idempotency (owner, key, fingerprint, holder, reservation, reserved_at,"
    " lease_until) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_TAKE_OVER: LiteralString = (
    "UPDATE crm_idempotency SET holder = %s, lease_until = %s,"
    " reservation = COALESCE(reservation, %s) WHERE owner = %s AND key = %s"
    " AND fingerprint = %s AND status IS NULL AND (lease_until IS NULL OR lease_until < %s)"
)
_SELECT: LiteralString = (
    "SELECT fingerprint, status, body, holder, reservation, reserved_at, lease_until"
    " FROM crm_idempotency WHERE owner = %s AND key = %s"
)
_RENEW: LiteralString = (
    "UPDATE crm_idempotency SET lease_until = %s"
    " WHERE owner = %s AND key = %s AND holder = %s AND status IS NULL"
)
_COMPLETE: LiteralString = (
    "UPDATE crm_idempotency SET status = %s, body = %s, lease_until = NULL"
    " WHERE owner = %s AND key = %s AND holder = %s AND status IS NULL"
)
_RELEASE: LiteralString = (
    "DELETE FROM crm_idempotency WHERE owner = %s AND key = %s AND holder = %s AND status IS NULL"
)
_SWEEP: LiteralString = "DELETE FROM crm_idempotency WHERE reserved_at < %s"
_SENT_KEYS: LiteralString = "SELECT owner, key FROM crm_idempotency WHERE substr(key, 1, 5) <> %s"
_DIGEST_KEY: LiteralString = (
    "UPDATE crm_idempotency SET key = %s WHERE owner = %s AND key = %s"
    " AND NOT EXISTS (SELECT 1 FROM crm_idempotency WHERE owner = %s AND key = %s)"
)
_DROP_KEY: LiteralString = "DELETE FROM crm_idempotency WHERE owner = %s AND key = %s"


class KeyTable:
    """The keys' rows: each operation one transaction on either database."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def reserve(
        self,
        held: Hold,
        request: str,
        *,
        reservation: str,
        now: float,
        lease_until: float,
        forget_before: float,
    ) -> KeyRow | None:
        """Insert the key as `held`'s (after forgetting it if it expired), else take it
        over from a holder whose lease ran out; answer the row as it then is."""
        owner, key, holder = held.owner, held.event_key, held.holder
        mine = KeyRow(
            fingerprint=request,
            status=None,
            body=None,
            holder=holder,
            reservation=reservation,
            reserved_at=now,
            lease_until=lease_until,
        )
        insert = (owner, key, request, holder, mine.reservation, now, lease_until)
        with self._db.transaction() as run:
            if run(_INSERT, insert).rowcount == 1:
                return mine
            forgotten = run(_FORGET_KEY, (owner, key, forget_before)).rowcount == 1
            if forgotten and run(_INSERT, insert).rowcount == 1:
                return mine
            taking_over = (holder, lease_until, mine.reservation, owner, key, request)
            run(_TAKE_OVER, (*taking_over, now))
            row = run(_SELECT, (owner, key)).fetchone()
        return (
            None if row is None else KeyRow(**dict(zip(KeyRow.__struct_fields__, row, strict=True)))
        )

    def renew(self, held: Hold, lease_until: float) -> bool:
        with self._db.transaction() as run:
            return run(_RENEW, (lease_until, held.owner, held.event_key, held.holder)).rowcount == 1

    def complete(self, held: Hold, status: int, body: bytes) -> None:
        with self._db.transaction() as run:
            run(_COMPLETE, (status, body, held.owner, held.event_key, held.holder))

    def release(self, held: Hold) -> None:
        with self._db.transaction() as run:
            run(_RELEASE, (held.owner, held.event_key, held.holder))

    def sweep(self, forget_before: float) -> int:
        with self._db.transaction() as run:
            return run(_SWEEP, (forget_before,)).rowcount

    def digest_sent_keys(self, digest: Callable[[str, str], str], prefix: str) -> int:
        """Rows a release before digests keyed by the key as sent (none begins with
        `prefix`, as every digest does) are keyed by `digest(owner, key)` instead, so a
        retry finds them and nobody reads the key here; a row some process already holds
        under the digest wins. Answers how many rows were keyed as sent."""
        with self._db.transaction() as run:
            sent = run(_SENT_KEYS, (prefix,)).fetchall()
            for owner, key in sent:
                stored = digest(owner, key)
                run(_DIGEST_KEY, (stored, owner, key, owner, stored))
                run(_DROP_KEY, (owner, key))
        return len(sent)


_PG_DDL: tuple[LiteralString, ...] = (
    "CREATE TABLE IF NOT EXISTS crm_idempotency (owner text NOT NULL, key text NOT NULL,"
    " fingerprint text NOT NULL, status integer, body bytea,"
    " created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (owner, key))",
    # Tables made before leases and retention get their columns.
    "ALTER TABLE crm_idempotency ADD COLUMN IF NOT EXISTS holder text,"
    " ADD COLUMN IF NOT EXISTS reservation text,"
    " ADD COLUMN IF NOT EXISTS reserved_at double precision,"
    " ADD COLUMN IF NOT EXISTS lease_until double precision",
    "UPDATE crm_idempotency SET reserved_at = extract(epoch FROM created_at)"
    " WHERE reserved_at IS NULL",
    "CREATE INDEX IF NOT EXISTS crm_idempotency_reserved_at ON crm_idempotency (reserved_at)",
)


class PostgresDatabase:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with pool.connection() as conn:
            create_tables(conn, *_PG_DDL)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Run]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn.execute


_SQLITE_DDL = (
    "CREATE TABLE IF NOT EXISTS crm_idempotency (owner text NOT NULL, key text NOT NULL,"
    " fingerprint text NOT NULL, status integer, body blob,"
    " created_at text NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (owner, key))"
)
_SQLITE_COLUMNS = {"holder": "text", "reservation": "text", "reserved_at": "real"}
_SQLITE_COLUMNS |= {"lease_until": "real"}


class SqliteDatabase:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10
        )
        self._lock = threading.Lock()
        self._conn.execute(_SQLITE_DDL)
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(crm_idempotency)")}
        for name, kind in _SQLITE_COLUMNS.items():
            if name not in present:  # a table made before leases and retention
                self._conn.execute(f"ALTER TABLE crm_idempotency ADD COLUMN {name} {kind}")
        self._conn.execute(
            "UPDATE crm_idempotency SET reserved_at = CAST(strftime('%s', created_at) AS REAL)"
            " WHERE reserved_at IS NULL"
        )
        self._conn.execute(
            "CREATE INDEX IF NOT EXISTS crm_idempotency_reserved_at"
            " ON crm_idempotency (reserved_at)"
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Run]:
        """BEGIN IMMEDIATE: the whole operation is atomic across processes too."""
        with self._lock, immediate(self._conn):
            yield self._run

    def _run(self, statement: LiteralString, params: tuple[Any, ...]) -> sqlite3.Cursor:
        return self._conn.execute(statement.replace("%s", "?"), params)
