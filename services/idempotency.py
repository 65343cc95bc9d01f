"""Idempotency-Key: a retried command gets the first answer, and no second event.

Protocol: `begin` reserves (principal, key) with a fingerprint of the request; if the
key was already answered, it returns that stored answer instead. After the command
succeeded, `complete` stores the answer; if it failed, `release` frees the key so a
retry runs again (a failed command changed nothing). A second request with the same
key while the first is still running, or with a different request, is refused.

A reservation left unanswered for `LEASE_SECONDS` (its request was cut off by a database
outage before it could `complete` or `release`) is taken over by the next identical
request, so a client that retries is not refused forever. Known limit: if that first
request had stored its events before losing the database, the retry stores them again
(the key and the events are not written in one transaction).

Storage: table `crm_idempotency` in PostgreSQL, or `idempotency.db` (SQLite) in the
embedded data dir: one small adapter per database.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

import msgspec
from psycopg_pool import ConnectionPool

from consumers.pg_ddl import create_tables

KEY_LIMIT = 200
LEASE_SECONDS = 30
"""A command is decided and saved in milliseconds; one still unanswered after this long
was cut off (see the module docstring)."""


class IdempotencyError(Exception):
    """The key cannot be used for this request; `reason` is a stable problem suffix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StoredAnswer(msgspec.Struct, frozen=True):
    status: int
    body: bytes


class BadIdempotencyKeyError(IdempotencyError):
    """The key itself is malformed (empty, too long, not printable ASCII)."""


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).hexdigest()


def check_key(key: str) -> str:
    if not 0 < len(key) <= KEY_LIMIT or not key.isascii() or not key.isprintable():
        raise BadIdempotencyKeyError(
            "bad-idempotency-key", f"Idempotency-Key must be 1-{KEY_LIMIT} printable ASCII"
        )
    return key


class IdempotencyTable(Protocol):
    def reserve(
        self, owner: str, key: str, fingerprint: str
    ) -> tuple[str, int | None, bytes | None] | None:
        """None when newly reserved, else the existing (fingerprint, status, body)."""
        ...

    def complete(self, owner: str, key: str, status: int, body: bytes) -> None: ...
    def release(self, owner: str, key: str) -> None: ...


class Idempotency:
    def __init__(self, table: IdempotencyTable) -> None:
        self._table = table

    def begin(self, owner: str, key: str, request_fingerprint: str) -> StoredAnswer | None:
        """None: go ahead (and later `complete` or `release`); else the first answer."""
        existing = self._table.reserve(owner, check_key(key), request_fingerprint)
        if existing is None:
            return None
        stored_fingerprint, status, body = existing
        if stored_fingerprint != request_fingerprint:
            raise IdempotencyError(
                "idempotency-key-reused", "this Idempotency-Key was used for another request"
            )
        if status is None or body is None:
            raise IdempotencyError(
                "idempotency-key-in-use", "a request with this Idempotency-Key is still running"
            )
        return StoredAnswer(status, body)

    def complete(self, owner: str, key: str, answer: StoredAnswer) -> None:
        self._table.complete(owner, key, answer.status, answer.body)

    def release(self, owner: str, key: str) -> None:
        self._table.release(owner, key)


_PG_DDL = (
    "CREATE TABLE IF NOT EXISTS crm_idempotency (owner text NOT NULL, key text NOT NULL,"
    " fingerprint text NOT NULL, status integer, body bytea,"
    " created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (owner, key))"
)


class PostgresIdempotencyTable:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with pool.connection() as conn:
            create_tables(conn, _PG_DDL)

    def reserve(
        self, owner: str, key: str, fingerprint: str
    ) -> tuple[str, int | None, bytes | None] | None:
        with self._pool.connection() as conn:
            inserted = conn.execute(
                "INSERT INTO crm_idempotency AS i (owner, key, fingerprint) VALUES (%s, %s, %s)"
                " ON CONFLICT (owner, key) DO UPDATE SET created_at = now()"
                " WHERE i.status IS NULL AND i.fingerprint = EXCLUDED.fingerprint"
                " AND i.created_at < now() - make_interval(secs => %s)",
                (owner, key, fingerprint, LEASE_SECONDS),
            ).rowcount
            if inserted == 1:
                return None
            row = conn.execute(
                "SELECT fingerprint, status, body FROM crm_idempotency"
                " WHERE owner = %s AND key = %s",
                (owner, key),
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def complete(self, owner: str, key: str, status: int, body: bytes) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE crm_idempotency SET status = %s, body = %s WHERE owner = %s AND key = %s",
                (status, body, owner, key),
            )

    def release(self, owner: str, key: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "DELETE FROM crm_idempotency WHERE owner = %s AND key = %s AND status IS NULL",
                (owner, key),
            )


class SqliteIdempotencyTable:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute(
            _PG_DDL.replace("timestamptz", "text")
            .replace("bytea", "blob")
            .replace("now()", "CURRENT_TIMESTAMP")
        )

    def reserve(
        self, owner: str, key: str, fingerprint: str
    ) -> tuple[str, int | None, bytes | None] | None:
        with self._lock:
            inserted = self._conn.execute(
                "INSERT INTO crm_idempotency (owner, key, fingerprint) VALUES (?, ?, ?)"
                " ON CONFLICT (owner, key) DO UPDATE SET created_at = CURRENT_TIMESTAMP"
                " WHERE status IS NULL AND fingerprint = excluded.fingerprint"
                " AND created_at < datetime('now', ?)",
                (owner, key, fingerprint, f"-{LEASE_SECONDS} seconds"),
            ).rowcount
            if inserted == 1:
                return None
            row = self._conn.execute(
                "SELECT fingerprint, status, body FROM crm_idempotency WHERE owner = ? AND key = ?",
                (owner, key),
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def complete(self, owner: str, key: str, status: int, body: bytes) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE crm_idempotency SET status = ?, body = ? WHERE owner = ? AND key = ?",
                (status, body, owner, key),
            )

    def release(self, owner: str, key: str) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM crm_idempotency WHERE owner = ? AND key = ? AND status IS NULL",
                (owner, key),
            )


def open_idempotency(pool: ConnectionPool | None, data_dir: Path) -> Idempotency:
    if pool is not None:
        return Idempotency(PostgresIdempotencyTable(pool))
    return Idempotency(SqliteIdempotencyTable(data_dir / "idempotency.db"))
