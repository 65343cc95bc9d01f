"""Principals and their bearer tokens: only a SHA-256 of each token is stored.

A token is `secrets.token_urlsafe(32)` (256 random bits), so a plain SHA-256 is enough:
there is nothing to brute-force that a slow hash would protect. Stored in PostgreSQL
table `crm_principals`, or in `principals.db` (SQLite) in the data dir in embedded mode.
Lookups are cached for a few seconds, so a revocation in another process takes effect
within `CACHE_SECONDS`; in this process it takes effect at once.

The API resolves tokens on its event loop (`resolve`): a cached answer at once, a lookup
on a worker thread, one per token at a time. A lookup on the loop held it for the
pool's whole wait while PostgreSQL was down (5 s per request whose token had left the
cache): `/healthz`, event streams and every other request stalled behind it in turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msgspec
from psycopg_pool import ConnectionPool

from consumers.pg_ddl import create_tables
from domain import fields as bound
from domain import validation as check
from domain.base import ValidationFailed
from domain.validation import DEPARTMENT_PATTERN
from services.access import Principal, Role

CACHE_SECONDS = 5.0
NAME_LIMIT = bound.PERSON


class PrincipalError(ValueError):
    """A principal cannot be added or changed as asked (duplicate name, bad role...)."""


class PrincipalRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    department: str
    role: str
    revoked: bool
    created_at: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class PrincipalTable(Protocol):
    """The storage adapter: one implementation per database."""

    def insert(self, record: PrincipalRecord, token_hash: str) -> bool: ...
    def by_hash(self, token_hash: str) -> PrincipalRecord | None: ...
    def all(self) -> list[PrincipalRecord]: ...
    def revoke(self, name: str) -> bool: ...


class Principals:
    """Adds, lists, revokes principals and resolves a bearer token to a `Principal`."""

    def __init__(self, table: PrincipalTable, departments: Iterable[str] | None = None) -> None:
        """`departments`: the configured ones (`CRM_DEPARTMENTS`); agents and managers must
        belong to one of them, since their rights are their department's."""
        self._table = table
        self._departments = None if departments is None else frozenset(departments)
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}  # `resolve`'s

    def add(self, name: str, department: str, role: str) -> str:
        """Create a principal and return its token: shown once, never stored."""
        record = PrincipalRecord(
            name=_check_name(name),
            department=self._check_department(department, role),
            role=_check_role(role),
            revoked=False,
            created_at=datetime.now(UTC).isoformat(),
        )
        token = new_token()
        if not self._table.insert(record, hash_token(token)):
            raise PrincipalError(f"a principal named {name!r} already exists")
        return token

    def list(self) -> list[PrincipalRecord]:
        return self._table.all()

    def revoke(self, name: str) -> None:
        if not self._table.revoke(name):
            raise PrincipalError(f"no principal named {name!r}")
        with self._lock:
            self._cache.clear()

    def _check_department(self, department: str, role: str) -> str:
        checked = _check_department(department)
        staff = role in (Role.AGENT, Role.MANAGER)
        if staff and self._departments is not None and checked not in self._departments:
            known = ", ".join(sorted(self._departments))
            raise PrincipalError(f"{role}s belong to a configured department ({known})")
        return checked

    def exists(self, name: str) -> bool:
        return any(record.name == name for record in self._table.all())

    def authenticate(self, token: str) -> Principal | None:
        """The active principal holding `token`, or None."""
        digest = hash_token(token)
        cached = self._cached(digest)
        return cached[1] if cached is not None else self._looked_up(digest)

    async def resolve(self, token: str) -> Principal | None:
        """`authenticate` for an event loop: the lookup (a query) on a worker thread,
        shared by every request of the same token meanwhile (see the module)."""
        digest = hash_token(token)
        cached = self._cached(digest)
        if cached is not None:
            return cached[1]
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(asyncio.to_thread(self._looked_up, digest))
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda done: self._lookup_done(digest, done))
        return await asyncio.shield(lookup)

    def _lookup_done(self, digest: str, done: asyncio.Future[Principal | None]) -> None:
        self._lookups.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved: its requests may all have gone meanwhile

    def _cached(self, digest: str) -> tuple[float, Principal | None] | None:
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached
        return None

    def _looked_up(self, digest: str) -> Principal | None:
        now = time.monotonic()
        record = self._table.by_hash(digest)
        principal = None
        if record is not None and not record.revoked:
            principal = Principal(
                name=record.name, department=record.department, role=Role(record.role)
            )
        if principal is not None:  # unknown tokens are not cached: no memory for attackers
            with self._lock:
                self._cache[digest] = (now, principal)
        return principal


def _check_name(name: str) -> str:
    """A name the domain takes for a person: it is the actor of every event the principal
    causes and the author of its internal notes (a personal field, where a name in the
    form of a sealed value would be taken for one). Printable, too: no format characters
    (a right-to-left override) and nothing that would break `crm principals list`."""
    try:
        checked = check.text(name, "name", NAME_LIMIT)
    except ValidationFailed as refused:
        reason = str(refused).removeprefix("name: ")
        raise PrincipalError(f"bad principal name {name[:80]!r}: {reason}") from None
    if checked != name or not name.isprintable():
        raise PrincipalError(f"bad principal name {name[:80]!r}: not printable, or padded")
    return name


def _check_department(department: str) -> str:
    if not DEPARTMENT_PATTERN.fullmatch(department):
        raise PrincipalError(f"bad department {department!r} (lowercase code, e.g. sales)")
    return department


def _check_role(role: str) -> str:
    if role not in set(Role):
        raise PrincipalError(f"bad role {role!r}; one of {', '.join(Role)}")
    return role


_COLUMNS = "name, department, role, revoked, created_at"


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

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with pool.connection() as conn:
            create_tables(conn, self.DDL)

    def insert(self, record: PrincipalRecord, token_hash: str) -> bool:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                "INSERT INTO crm_principals (name, department, role, token_hash, created_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (record.name, record.department, record.role, token_hash, record.created_at),
            )
            return cursor.rowcount == 1

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
        self._conn.execute(
            PostgresPrincipalTable.DDL.replace("boolean", "integer").replace("false", "0")
        )

    def insert(self, record: PrincipalRecord, token_hash: str) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO crm_principals"
                " (name, department, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (record.name, record.department, record.role, token_hash, record.created_at),
            )
            return cursor.rowcount == 1

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
