"""Where principals live: table `crm_principals` in PostgreSQL, or `principals.db` (SQLite).

One adapter per database, the same statements (`services.principals.PrincipalTable`):
insert a principal unless its name or one the rules cannot tell from it exists, look one
up by its token's hash, list them, revoke one. Each row keeps its name's `person_key`
(`name_key`, unique); rows stored before the column are given theirs as the table opens
(of twins stored then, the first by name; the other keeps none). `open_principals` picks
the adapter: PostgreSQL when a pool is configured, else the embedded data dir's file.
In: `PrincipalRecord`s, token hashes, names. Out: records, whether a row changed.
I/O: the database.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from psycopg import errors
from psycopg_pool import ConnectionPool

from consumers.pg_ddl import create_tables
from consumers.sqlite_tx import immediate
from domain import validation as check
from services.principals import PrincipalRecord, Principals

_COLUMNS = "name, department, role, revoked, created_at"
_INSERTED = "name, department, role, token_hash, created_at, name_key"
_UNKEYED = "SELECT name FROM crm_principals WHERE name_key IS NULL ORDER BY name"
"""Rows stored before `name_key`: given theirs as the table opens."""


def _inserted(record: PrincipalRecord, token_hash: str) -> tuple[str, ...]:
    return (
        *(record.name, record.department, record.role, token_hash, record.created_at),
        check.person_key(record.name),
    )


def _record(row: Any) -> PrincipalRecord:
    return PrincipalRecord(
        name=row[0], department=row[1], role=row[2], revoked=bool(row[3]), created_at=str(row[4])
    )


class PostgresPrincipalTable:
    DDL = (
        "CREATE TABLE IF NOT EXISTS crm_principals (name text PRIMARY KEY, department text"
        " NOT NULL, role text NOT NULL, token_hash text NOT NULL UNIQUE, revoked boolean"
        " NOT NULL DEFAULT false, created_at text NOT NULL)"
    )
    KEY_INDEX = (
        "CREATE UNIQUE INDEX IF NOT EXISTS crm_principals_name_key ON crm_principals (name_key)"
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with pool.connection() as conn:
            create_tables(
                conn,
                self.DDL,
                "ALTER TABLE crm_principals ADD COLUMN IF NOT EXISTS name_key text",
                self.KEY_INDEX,
            )
            for (name,) in conn.execute(_UNKEYED).fetchall():
                try:
                    with conn.transaction():
                        conn.execute(
                            "UPDATE crm_principals SET name_key = %s WHERE name = %s",
                            (check.person_key(name), name),
                        )
                except errors.UniqueViolation:
                    continue  # a twin stored before the key: `named_alike` finds the other

    def insert(self, record: PrincipalRecord, token_hash: str) -> bool:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                f"INSERT INTO crm_principals ({_INSERTED}) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                _inserted(record, token_hash),
            )
            return cursor.rowcount == 1

    def named_alike(self, name_key: str) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT name FROM crm_principals WHERE name_key = %s", (name_key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def by_hash(self, token_hash: str) -> PrincipalRecord | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM crm_principals WHERE token_hash = %s", (token_hash,)
            ).fetchone()
        return None if row is None else _record(row)

    def all(self) -> list[PrincipalRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM crm_principals ORDER BY name").fetchall()
        return [_record(row) for row in rows]

    def revoke(self, name: str) -> bool:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                "UPDATE crm_principals SET revoked = true WHERE name = %s", (name,)
            )
            return cursor.rowcount == 1


class SqlitePrincipalTable:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        # One write transaction: two processes opening an older file at once (`crm run`
        # and `crm principals add` after an upgrade) both added the column, and one failed.
        with immediate(self._conn) as conn:
            conn.execute(
                PostgresPrincipalTable.DDL.replace("boolean", "integer").replace("false", "0")
            )
            columns = {row[1] for row in conn.execute("PRAGMA table_info(crm_principals)")}
            if "name_key" not in columns:
                conn.execute("ALTER TABLE crm_principals ADD COLUMN name_key text")
            conn.execute(PostgresPrincipalTable.KEY_INDEX)
            for (name,) in conn.execute(_UNKEYED).fetchall():
                conn.execute(  # OR IGNORE: a twin stored before the key keeps none
                    "UPDATE OR IGNORE crm_principals SET name_key = ? WHERE name = ?",
                    (check.person_key(name), name),
                )

    def insert(self, record: PrincipalRecord, token_hash: str) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                f"INSERT OR IGNORE INTO crm_principals ({_INSERTED}) VALUES (?, ?, ?, ?, ?, ?)",
                _inserted(record, token_hash),
            )
            return cursor.rowcount == 1

    def named_alike(self, name_key: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT name FROM crm_principals WHERE name_key = ?", (name_key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def by_hash(self, token_hash: str) -> PrincipalRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM crm_principals WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        return None if row is None else _record(row)

    def all(self) -> list[PrincipalRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM crm_principals ORDER BY name"
            ).fetchall()
        return [_record(row) for row in rows]

    def revoke(self, name: str) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE crm_principals SET revoked = 1 WHERE name = ?", (name,)
            )
            return cursor.rowcount == 1


def open_principals(
    pool: ConnectionPool | None, data_dir: Path, departments: Iterable[str] | None = None
) -> Principals:
    """PostgreSQL when a pool is configured, else the embedded SQLite file."""
    if pool is not None:
        return Principals(PostgresPrincipalTable(pool), departments)
    return Principals(SqlitePrincipalTable(data_dir / "principals.db"), departments)
