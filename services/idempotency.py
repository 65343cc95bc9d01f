"""Idempotency-Key: a retried command gets the first answer and no second event, even
when the process running the first attempt died.

Protocol, per principal and key (`services.api.deps.CommandCall.run` drives it):
* `begin` reserves the key for one request (a fingerprint of method, path and body) and
  answers a `Reservation`, or the stored answer once the key's command completed. Another
  request with the key is refused while the key is held (`idempotency-key-in-use`); a
  different request with the key always (`idempotency-key-reused`).
* A holder keeps its key by a lease of `lease_seconds`, renewed while its command runs
  (`lease_kept`). Once a lease ran out without renewal (its process died), the next retry
  of the same request takes the key over, `recovering`: whether the dead attempt
  committed is then asked of the event store (`services.idempotency_recovery`).
* `complete` stores the answer; `release` frees the key after a failed command (which
  changed nothing) so that a retry runs it again. Both act only while the key is still
  this holder's, so an attempt that lost its key cannot overwrite or free it.
* A key is remembered for `retention_seconds` from its first reservation, then forgotten:
  its row is deleted when the key is used again and by a sweep (at most once a minute,
  while keys are used), and the key may serve a new request.

Storage: table `crm_idempotency` in PostgreSQL, or `idempotency.db` (SQLite) in the
embedded data dir, the same statements on both. Times are seconds since the epoch on the
API process's clock (`clock`, injectable for tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, LiteralString, Protocol
from uuid import UUID

import msgspec
import structlog
from psycopg_pool import ConnectionPool

from consumers.pg_ddl import create_tables

KEY_LIMIT = 200
SWEEP_EVERY = 60.0
"""Seconds between two sweeps of forgotten keys by one process (while keys are used)."""


class IdempotencyError(Exception):
    """The key cannot be used for this request; `reason` is a stable problem suffix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BadIdempotencyKeyError(IdempotencyError):
    """The key itself is malformed (empty, too long, not printable ASCII)."""


class StoredAnswer(msgspec.Struct, frozen=True):
    status: int
    body: bytes


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """A key held by one attempt. `holder` is this attempt's proof (renew, complete,
    release); `reservation` and `reserved_at` belong to the key and survive a takeover,
    so the retry of a dead attempt derives the same new ids (`created_id`) and knows
    since when to look for its events. `recovering`: taken over from a dead holder."""

    owner: str
    key: str
    holder: str
    reservation: UUID
    reserved_at: float
    recovering: bool


class KeyRow(msgspec.Struct, frozen=True, kw_only=True):
    """A key's row as stored (`status` and `body` set once its command completed)."""

    fingerprint: str
    status: int | None
    body: bytes | None
    holder: str | None
    reservation: str | None
    reserved_at: float


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).hexdigest()


def check_key(key: str) -> str:
    if not 0 < len(key) <= KEY_LIMIT or not key.isascii() or not key.isprintable():
        raise BadIdempotencyKeyError(
            "bad-idempotency-key", f"Idempotency-Key must be 1-{KEY_LIMIT} printable ASCII"
        )
    return key


def created_id(reservation: UUID, owner: str, key: str) -> UUID:
    """The id of the aggregate a keyed command creates: the same for every attempt under
    one reservation (a retry finds what a dead attempt created), another one once the key
    was forgotten and reserved anew (so a reused key never collides with its past)."""
    return uuid.uuid5(reservation, f"{owner}\n{key}")


def outcome(row: KeyRow | None, request: str, attempt: Reservation) -> Reservation | StoredAnswer:
    """What `begin` answers, from the key's row after `attempt` (a new reservation) tried
    to reserve the key or to take it over."""
    if row is not None and row.fingerprint != request:
        raise IdempotencyError(
            "idempotency-key-reused", "this Idempotency-Key was used for another request"
        )
    if row is not None and row.holder == attempt.holder and row.status is None:
        kept = UUID(row.reservation) if row.reservation else attempt.reservation
        return msgspec.structs.replace(
            attempt,
            reservation=kept,
            reserved_at=row.reserved_at,
            recovering=kept != attempt.reservation,
        )
    if row is not None and row.status is not None and row.body is not None:
        return StoredAnswer(row.status, row.body)
    raise IdempotencyError(
        "idempotency-key-in-use", "a request with this Idempotency-Key is still running"
    )


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...


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
    "SELECT fingerprint, status, body, holder, reservation, reserved_at FROM crm_idempotency"
    " WHERE owner = %s AND key = %s"
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


class KeyTable:
    """The keys' rows: each operation one transaction on either database."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def reserve(
        self, held: Reservation, request: str, *, lease_until: float, forget_before: float
    ) -> KeyRow | None:
        """Insert the key as `held`'s (after forgetting it if it expired), else take it
        over from a holder whose lease ran out; answer the row as it then is."""
        owner, key, holder = held.owner, held.key, held.holder
        now = held.reserved_at  # a new reservation is made now
        mine = KeyRow(
            fingerprint=request,
            status=None,
            body=None,
            holder=holder,
            reservation=str(held.reservation),
            reserved_at=now,
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

    def renew(self, held: Reservation, lease_until: float) -> bool:
        with self._db.transaction() as run:
            return run(_RENEW, (lease_until, held.owner, held.key, held.holder)).rowcount == 1

    def complete(self, held: Reservation, answer: StoredAnswer) -> None:
        with self._db.transaction() as run:
            run(_COMPLETE, (answer.status, answer.body, held.owner, held.key, held.holder))

    def release(self, held: Reservation) -> None:
        with self._db.transaction() as run:
            run(_RELEASE, (held.owner, held.key, held.holder))

    def sweep(self, forget_before: float) -> int:
        with self._db.transaction() as run:
            return run(_SWEEP, (forget_before,)).rowcount


class Idempotency:
    """The protocol above over a `KeyTable`, with its lease, retention and clock."""

    def __init__(
        self,
        table: KeyTable,
        *,
        lease_seconds: float = 30.0,
        retention_seconds: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self.lease_seconds = lease_seconds
        self.retention_seconds = retention_seconds
        self.clock = clock
        self._next_sweep = 0.0

    def begin(self, owner: str, key: str, request: str) -> Reservation | StoredAnswer:
        """A `Reservation` (go ahead, then `complete` or `release`), or the first answer."""
        now = self.clock()
        if now >= self._next_sweep:
            self.sweep()
        held = Reservation(
            owner=owner,
            key=check_key(key),
            holder=uuid.uuid4().hex,
            reservation=uuid.uuid4(),
            reserved_at=now,
            recovering=False,
        )
        row = self._table.reserve(
            held,
            request,
            lease_until=now + self.lease_seconds,
            forget_before=now - self.retention_seconds,
        )
        return outcome(row, request, held)

    def renew(self, held: Reservation) -> bool:
        """Extend `held`'s lease; False when the key is no longer `held`'s."""
        return self._table.renew(held, self.clock() + self.lease_seconds)

    def complete(self, held: Reservation, answer: StoredAnswer) -> None:
        self._table.complete(held, answer)

    def release(self, held: Reservation) -> None:
        self._table.release(held)

    def sweep(self) -> int:
        """Delete every forgotten key (reserved longer than the retention ago)."""
        now = self.clock()
        self._next_sweep = now + min(SWEEP_EVERY, self.retention_seconds)
        return self._table.sweep(now - self.retention_seconds)


@contextlib.asynccontextmanager
async def lease_kept(idempotency: Idempotency, held: Reservation) -> AsyncIterator[None]:
    """Renew `held`'s lease every third of it while the block runs, so that a live
    holder keeps its key however long its command takes."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(idempotency.lease_seconds / 3)
            if not await asyncio.to_thread(idempotency.renew, held):
                structlog.get_logger().warning("idempotency_key_lost", key=held.key)
                return

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing


_PG_DDL: tuple[LiteralString, ...] = (
    "CREATE TABLE IF NOT EXISTS crm_idempotency (owner text NOT NULL, key text NOT NULL,"
    " fingerprint text NOT NULL, status integer, body bytea,"
    " created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (owner, key))",
    # Tables made before leases and retention get their columns; their keys' age is
    # taken from `created_at`, and their keys in flight count as leases run out.
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
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._run
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _run(self, statement: LiteralString, params: tuple[Any, ...]) -> sqlite3.Cursor:
        return self._conn.execute(statement.replace("%s", "?"), params)


def open_idempotency(
    pool: ConnectionPool | None,
    data_dir: Path,
    *,
    lease_seconds: float = 30.0,
    retention_seconds: float = 86_400.0,
) -> Idempotency:
    database: Database = (
        SqliteDatabase(data_dir / "idempotency.db") if pool is None else PostgresDatabase(pool)
    )
    return Idempotency(
        KeyTable(database), lease_seconds=lease_seconds, retention_seconds=retention_seconds
    )
