"""A store's passing troubles, found among an error's causes: each a 503 with `Retry-After`.

No client input may produce a 500, and a store's trouble is none of the request's fault:
a full disk or database anywhere in its causes is a 503 `storage-full` (it works once
space returns); a store held locked by another connection past its wait (SQLite's
"database is locked", PostgreSQL's `lock_timeout`) a 503 `storage-busy` (a backup or
another process's long write passes); a read-model query cancelled past its deadline
(`CRM_READ_QUERY_SECONDS`: PostgreSQL's `statement_timeout`, SQLite's interrupt) a 503
`query-timeout` (the deadline, in whole seconds: the queries ahead of a retry have met
theirs by then): the server was too busy for it, or its filter made it scan too much
(then a narrower one answers); a database that cannot be reached (a PostgreSQL restart)
a 503 `event-store-unavailable`, for every request that needs it: retrying is the right
move; a command's batch lost with the database as it was stored a 503 `outcome-unknown`.
`STORE_TROUBLES` is the order they are recognised in. In: any exception. Out: whether it
is one of them, its (status, slug, title), its `Retry-After`. I/O: none.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator

import psycopg

from consumers.pg_pool import DATABASE_UNAVAILABLE
from services.batch_refusals import CommitUnknownError
from services.read_deadline import QueryTimeoutError

UNAVAILABLE_RETRY_AFTER_S = 2
"""What a 503 `event-store-unavailable` tells clients to wait: a restart takes seconds."""
STORAGE_FULL = (503, "storage-full", "The server's storage is full; retry later")
STORAGE_RETRY_AFTER = "30"
STORAGE_BUSY = (
    503,
    "storage-busy",
    "A store this request needs stayed locked by another connection; retry shortly",
)
BUSY_RETRY_AFTER = "5"  # as long as the stores wait for a lock (`key_stores.LOCK_SECONDS`)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
UNAVAILABLE = (503, "event-store-unavailable", "The event store cannot be reached; retry")
OUTCOME_UNKNOWN = (
    503,
    "outcome-unknown",
    "The event store went away as this command was stored: it may have been",
)
KEYED_UNKNOWN = "; retry it with the same Idempotency-Key to learn which"
UNKEYED_UNKNOWN = (
    "; it was sent without an Idempotency-Key, so a retry may store it a second time: read"
    " the resource first to learn which (send an Idempotency-Key to make retries safe)"
)
"""What an `outcome-unknown`'s detail adds to its title: a keyed command's retry learns
the outcome; a command without a key cannot (red team: it was told to retry with "the
same Idempotency-Key" it never had)."""
QUERY_TIMEOUT = (
    503,
    "query-timeout",
    "A query of this request ran past its deadline; retry later, or narrow its filters",
)
QUERY_RETRY_AFTER = "1"
"""What a query cancelled by no deadline of the API's (`QueryTimeoutError` says its own: an
operator's `pg_cancel_backend`) tells clients to wait: the default deadline's."""


def storage_full(error: BaseException) -> bool:
    """Whether a full disk or database is among the causes of `error` (the stores wrap
    their drivers' errors): SQLite's SQLITE_FULL, PostgreSQL's disk_full, ENOSPC."""
    return any(
        getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL  # sqlite3.Error
        or isinstance(cause, psycopg.errors.DiskFull)
        or (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT))
        for cause in causes(error)
    )


def busy(error: BaseException) -> bool:
    """Whether a store stayed locked by another connection past its wait, however
    wrapped: SQLite's SQLITE_BUSY or SQLITE_LOCKED (any extended code of them: "database
    is locked"), PostgreSQL's lock_not_available (`lock_timeout` ran out), or a
    transaction PostgreSQL rolled back for another's sake (serialization failure,
    deadlock: the batch writer's refusals, which store nothing; red team: they were
    answered `event-store-unavailable`, whose key stays held, with the key released)."""
    return any(
        ((getattr(cause, "sqlite_errorcode", None) or 0) & 0xFF) in _BUSY_CODES  # sqlite3.Error
        or isinstance(cause, _PG_BUSY)
        for cause in causes(error)
    )


_PG_BUSY = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.TransactionRollback,  # class 40; psycopg derives its members apart:
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


def timed_out(error: BaseException) -> bool:
    """Whether a query ran past its deadline and was cancelled, however wrapped:
    PostgreSQL's query_canceled (`statement_timeout`), SQLite's SQLITE_INTERRUPT (the
    API's read connections: `services.api.direct_reads`), as the reads raise them
    (`QueryTimeoutError`) or not."""
    return any(
        getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT  # sqlite3.Error
        or isinstance(cause, psycopg.errors.QueryCanceled | QueryTimeoutError)
        for cause in causes(error)
    )


def outcome_unknown(error: BaseException) -> bool:
    """Whether a command's batch went out to the database, which was lost before it
    answered and stayed out of reach (`CommitUnknownError`, however wrapped): it may be
    stored, so a retry without its `Idempotency-Key` may store it twice."""
    return any(isinstance(cause, CommitUnknownError) for cause in causes(error))


def unavailable(error: BaseException) -> bool:
    """Whether the database could not be reached, however wrapped (a group-commit batch
    that failed when PostgreSQL went away reaches its callers as `StoreFailedError`)."""
    return any(isinstance(cause, DATABASE_UNAVAILABLE) for cause in causes(error))


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it wraps, and so on (each once): the explicit causes only
    (`raise Wrapper(...) from error`, or `__cause__` set), as every wrapper between a
    driver and the API chains them (eventsourcing's recorders, the group committer's
    `StoreFailedError`; ruff's B904 asks it of this code). An exception's implicit
    context (`__context__`) is not followed: it is one raised while another was being
    handled, a different error (a bug in clean-up code while a lock timed out), which
    was answered as the one it interrupted, a 503 logged without its traceback."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__


STORE_TROUBLES = (
    (outcome_unknown, OUTCOME_UNKNOWN, str(UNAVAILABLE_RETRY_AFTER_S)),  # first: it may be
    (storage_full, STORAGE_FULL, STORAGE_RETRY_AFTER),  # stored, whatever the last try met
    (timed_out, QUERY_TIMEOUT, QUERY_RETRY_AFTER),
    (busy, STORAGE_BUSY, BUSY_RETRY_AFTER),
    (unavailable, UNAVAILABLE, str(UNAVAILABLE_RETRY_AFTER_S)),  # last: the others are too
)
"""A store's passing troubles, the first that matches answering: its problem, and what
it tells clients to wait."""
