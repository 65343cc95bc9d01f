"""Data-key stores on PostgreSQL and SQLite (see `consumers.keyring`).

Table `crm_subject_keys(subject, key, erased_at)`: a destroyed key keeps its row with
`key` NULL (a tombstone), so the subject can never get a fresh key by accident. Table
`crm_search_key` holds the one search key of customer search (`consumers.blind_index`),
which also keys the fingerprints of Idempotency-Key requests (`services.idempotency`).

A destroyed key must leave no copy in the files. SQLite: the connection runs with
`secure_delete` (freed content is overwritten with zeros) and a rollback journal, which
is deleted after each commit; `destroy` also checkpoints, should the file ever be in WAL
mode. PostgreSQL keeps the old row version in dead tuples, in its WAL, on replicas and
in backups until vacuumed, recycled or rotated: what an operator does about that is in
the README ("Erasure on PostgreSQL").

Table `crm_erasures_owed(subject, since)` holds the erasures whose key is still to be
destroyed: an erasure marks itself owed (`owe_erasure`) before its event is stored, and
`destroy` clears the mark in the transaction that writes the tombstone, so an erasure
whose destruction failed after its event is found and finished later
(`services.erasure_sweep`). The writes an erasure makes wait `lock_seconds` for a lock
another connection holds (SQLite's busy wait; PostgreSQL's `lock_timeout`), then fail
(`sqlite3.OperationalError` "database is locked", `psycopg.errors.LockNotAvailable`):
without it a key row locked on PostgreSQL held an erasure for as long as the lock.

SQLite's reads of keys and `create` are also made on a connection that waits for no lock
(`SqliteKeysAtOnce`): the API's event loop tries them there, and does again through the
store, which waits, on a worker thread only when another connection holds keys.db.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg_pool import ConnectionPool

from consumers.pg_ddl import create_tables
from consumers.sqlite_tx import immediate

_PG_DDL = """
CREATE TABLE IF NOT EXISTS crm_subject_keys (
    subject uuid PRIMARY KEY,
    key bytea,
    erased_at timestamptz
)"""
_PG_ERASED_DDL = """
CREATE INDEX IF NOT EXISTS crm_subject_keys_erased_at
    ON crm_subject_keys (erased_at) WHERE key IS NULL"""
_PG_SEARCH_DDL = """
CREATE TABLE IF NOT EXISTS crm_search_key (
    id integer PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL
)"""
_PG_OWED_DDL = """
CREATE TABLE IF NOT EXISTS crm_erasures_owed (
    subject uuid PRIMARY KEY,
    since timestamptz NOT NULL
)"""
_PG_OWE = """
INSERT INTO crm_erasures_owed (subject, since)
SELECT %(subject)s, clock_timestamp() WHERE NOT EXISTS
    (SELECT FROM crm_subject_keys WHERE subject = %(subject)s AND key IS NULL)
ON CONFLICT (subject) DO UPDATE SET since = excluded.since"""
_PG_DROP_OWED = """
DELETE FROM crm_erasures_owed
WHERE subject = %s AND since < clock_timestamp() - make_interval(secs => %s)"""
LOCK_SECONDS = 5.0
"""How long an erasure's write waits for a lock another connection holds, then fails (a
503 `storage-busy`, retried): SQLite's own default busy wait, on PostgreSQL too."""
PG_LOAD_MANY = "SELECT subject, key FROM crm_subject_keys WHERE subject = ANY(%s::uuid[])"
"""The keys of many subjects, named by one `uuid_array` parameter. psycopg sends a str
untyped, so the cast types the parameter itself: it is parsed once per execution. (Cast
from `text`, a prepared statement's generic plan parsed it again for every row a scan
read: 7.7 ms of PostgreSQL's CPU for a page's keys, not ~0.2.)"""
PG_ERASED_SINCE = (
    "SELECT statement_timestamp(), ARRAY(SELECT subject FROM crm_subject_keys WHERE key IS NULL"
    " AND erased_at >= coalesce(%s::timestamptz, statement_timestamp() - %s::interval))"
)
"""The database's time and the subjects whose keys were destroyed at or after the first
parameter (None: the second, an interval, before now), found by a partial index: how an
API process learns of erasures by others (`services.erasure_watch`). `destroy` stamps
`erased_at` with the time it writes the tombstone, just before its commit."""
_SQLITE_NOW = "CAST(strftime('%s', 'now') AS INTEGER)"  # seconds since the epoch
_SQLITE_OWE = f"""
INSERT INTO crm_erasures_owed (subject, since)
SELECT ?1, {_SQLITE_NOW} WHERE NOT EXISTS
    (SELECT 1 FROM crm_subject_keys WHERE subject = ?1 AND key IS NULL)
ON CONFLICT (subject) DO UPDATE SET since = excluded.since"""
_SQLITE_DROP_OWED = f"DELETE FROM crm_erasures_owed WHERE subject = ? AND since < {_SQLITE_NOW} - ?"
_SQLITE_CREATE = "INSERT OR IGNORE INTO crm_subject_keys (subject, key) VALUES (?, ?)"
_SQLITE_KEY = "SELECT key FROM crm_subject_keys WHERE subject = ?"
_SQLITE_CHUNK = 500
"""Subjects per `IN (...)`: below SQLite's bound-parameter limit."""


def locked(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused `error`'s statement for a lock another connection held
    (SQLITE_BUSY or SQLITE_LOCKED, any extended code of them: "database is locked")."""
    return (error.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def uuid_array(subjects: Iterable[UUID]) -> str:
    """`subjects` as one PostgreSQL array literal (`PG_LOAD_MANY`): psycopg dumps a list of
    UUIDs element by element in Python, ~35 us more for a page's fifty."""
    return "{" + ",".join([subject.hex for subject in subjects]) + "}"


class PostgresKeyStore:
    def __init__(self, pool: ConnectionPool, lock_seconds: float = LOCK_SECONDS) -> None:
        self._pool = pool
        self._lock_timeout = f"{round(lock_seconds * 1000)}ms"  # a setting's text
        with pool.connection() as conn:
            create_tables(conn, _PG_DDL, _PG_ERASED_DDL, _PG_SEARCH_DDL, _PG_OWED_DDL)

    def load(self, subject: UUID) -> bytes | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT key FROM crm_subject_keys WHERE subject = %s", (subject,)
            ).fetchone()
        return None if row is None else row[0]

    def load_many(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        with self._pool.connection() as conn:
            rows = conn.execute(PG_LOAD_MANY, (uuid_array(subjects),), binary=True).fetchall()
        found: dict[UUID, bytes | None] = {row[0]: row[1] for row in rows}
        return {subject: found.get(subject) for subject in subjects}

    def create(self, subject: UUID, key: bytes) -> bytes | None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO crm_subject_keys (subject, key) VALUES (%s, %s)"
                " ON CONFLICT (subject) DO NOTHING",
                (subject, key),
            )
            row = conn.execute(
                "SELECT key FROM crm_subject_keys WHERE subject = %s", (subject,)
            ).fetchone()
        return None if row is None else row[0]

    def destroyed(self, subject: UUID) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT key IS NULL FROM crm_subject_keys WHERE subject = %s", (subject,)
            ).fetchone()
        return bool(row and row[0])

    def destroy(self, subject: UUID) -> None:
        """The tombstone, and the erasure no longer owed, in one transaction."""
        with self._erasure_write() as conn:
            conn.execute(
                "INSERT INTO crm_subject_keys (subject, key, erased_at)"
                " VALUES (%s, NULL, clock_timestamp())"
                " ON CONFLICT (subject) DO UPDATE SET key = NULL, erased_at = clock_timestamp()",
                (subject,),
            )
            conn.execute("DELETE FROM crm_erasures_owed WHERE subject = %s", (subject,))

    def owe_erasure(self, subject: UUID) -> None:
        with self._erasure_write() as conn:
            conn.execute(_PG_OWE, {"subject": subject})

    def owed_erasures(self) -> list[UUID]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT subject FROM crm_erasures_owed").fetchall()
        return [row[0] for row in rows]

    def drop_owed_erasure(self, subject: UUID, older_than: float) -> None:
        with self._erasure_write() as conn:
            conn.execute(_PG_DROP_OWED, (subject, older_than))

    @contextmanager
    def _erasure_write(self) -> Iterator[Connection[Any]]:
        """A transaction whose statements wait `lock_seconds` for a lock, then fail."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (self._lock_timeout,))
            yield conn

    def search_key(self) -> bytes:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO crm_search_key (id, key) VALUES (1, %s) ON CONFLICT DO NOTHING",
                (os.urandom(32),),
            )
            row = conn.execute("SELECT key FROM crm_search_key WHERE id = 1").fetchone()
        assert row is not None
        return bytes(row[0])


class SqliteKeyStore:
    """Keys in their own SQLite file (not the event store's, to avoid lock contention)."""

    def __init__(self, path: Path, lock_seconds: float = LOCK_SECONDS) -> None:
        self._path = path
        self._conn = _connect(path, lock_seconds)
        self._lock = threading.Lock()
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS crm_subject_keys"
            " (subject TEXT PRIMARY KEY, key BLOB, erased_at TEXT)"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS crm_erasures_owed"
            " (subject TEXT PRIMARY KEY, since INTEGER NOT NULL)"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS crm_search_key"
            " (id INTEGER PRIMARY KEY CHECK (id = 1), key BLOB NOT NULL)"
        )

    def load(self, subject: UUID) -> bytes | None:
        with self._lock:
            row = self._conn.execute(_SQLITE_KEY, (str(subject),)).fetchone()
        return None if row is None else row[0]

    def load_many(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        texts = [str(subject) for subject in subjects]
        with self._lock:
            found = _key_rows(self._conn, texts)
        return {subject: found.get(text) for subject, text in zip(subjects, texts, strict=True)}

    def create(self, subject: UUID, key: bytes) -> bytes | None:
        with self._lock:
            self._conn.execute(_SQLITE_CREATE, (str(subject), key))
        return self.load(subject)

    def at_once(self) -> SqliteKeysAtOnce:
        """Reads of keys and `create` on this file that wait for no lock (for one thread:
        a connection of its own, the caller's to close)."""
        return SqliteKeysAtOnce(self._path)

    def destroyed(self, subject: UUID) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT key IS NULL FROM crm_subject_keys WHERE subject = ?", (str(subject),)
            ).fetchone()
        return bool(row and row[0])

    def destroy(self, subject: UUID) -> None:
        """The tombstone, and the erasure no longer owed, in one transaction."""
        with self._lock:
            with immediate(self._conn) as conn:
                conn.execute(
                    "INSERT INTO crm_subject_keys (subject, key, erased_at)"
                    " VALUES (?, NULL, datetime('now'))"
                    " ON CONFLICT (subject) DO UPDATE SET key = NULL, erased_at = datetime('now')",
                    (str(subject),),
                )
                conn.execute("DELETE FROM crm_erasures_owed WHERE subject = ?", (str(subject),))
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def owe_erasure(self, subject: UUID) -> None:
        with self._lock:
            self._conn.execute(_SQLITE_OWE, (str(subject),))

    def owed_erasures(self) -> list[UUID]:
        with self._lock:
            rows = self._conn.execute("SELECT subject FROM crm_erasures_owed").fetchall()
        return [UUID(subject) for (subject,) in rows]

    def drop_owed_erasure(self, subject: UUID, older_than: float) -> None:
        with self._lock:
            self._conn.execute(_SQLITE_DROP_OWED, (str(subject), older_than))

    def search_key(self) -> bytes:
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO crm_search_key (id, key) VALUES (1, ?)", (os.urandom(32),)
            )
            (key,) = self._conn.execute("SELECT key FROM crm_search_key WHERE id = 1").fetchone()
        return bytes(key)


class SqliteKeysAtOnce:
    """The key rows of subjects, and `SqliteKeyStore.create`, on a connection of its own
    that waits for no lock (busy timeout 0): for the API's event loop, which must not
    stall while another process holds keys.db (a backup, `sqlite3` in a shell, the CLI).
    The file keeps a rollback journal (see above), whose readers do wait for a writer's
    exclusive lock: then a call raises at once (`sqlite3.OperationalError`, `locked`),
    having changed nothing, and the caller asks the `SqliteKeyStore` instead, which
    waits. The connection runs as the store's does (`secure_delete`, the rollback
    journal), so a key it wrote leaves no copy once destroyed either. One thread at a
    time; `close` it."""

    def __init__(self, path: Path) -> None:
        self._conn = _connect(path, 0.0)

    def rows(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        """The keys of those of `subjects` that have a row: the key, or None once
        destroyed (`services.event_source.EventSource.keys`), in one query a chunk."""
        texts = {str(subject): subject for subject in subjects}
        return {texts[text]: key for text, key in _key_rows(self._conn, list(texts)).items()}

    def create(self, subject: UUID, key: bytes) -> bytes | None:
        """`SqliteKeyStore.create`, in one write transaction taken at once or not at all
        (its commit too: refused while another connection reads, it is rolled back)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SQLITE_CREATE, (str(subject), key))
            row = conn.execute(_SQLITE_KEY, (str(subject),)).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return None if row is None else row[0]

    def close(self) -> None:
        self._conn.close()


def _connect(path: Path, lock_seconds: float) -> sqlite3.Connection:
    """A connection to the key file, waiting `lock_seconds` for a lock another connection
    holds, erasing freed content (`secure_delete`: see above). Autocommit."""
    conn = sqlite3.connect(
        path, timeout=lock_seconds, check_same_thread=False, isolation_level=None
    )
    conn.execute("PRAGMA secure_delete = ON")
    return conn


def _key_rows(conn: sqlite3.Connection, texts: Sequence[str]) -> dict[str, bytes | None]:
    """The key rows of the subjects named by `texts` that have one, by subject: the key,
    or None (a tombstone)."""
    found: dict[str, bytes | None] = {}
    for start in range(0, len(texts), _SQLITE_CHUNK):
        chunk = texts[start : start + _SQLITE_CHUNK]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT subject, key FROM crm_subject_keys WHERE subject IN ({marks})"
        found.update(conn.execute(query, chunk).fetchall())
    return found
