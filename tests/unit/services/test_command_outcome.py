"""Which failures of a keyed command release its Idempotency-Key (`stored_nothing`): only
those that prove it stored nothing. Red team: every failure released it, and a batch
committed as PostgreSQL went away was run again by the retry (two messages, two
customers, under one key)."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import uuid

import psycopg
import pytest
from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    PersistenceError,
)

from domain.base import InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from domain.base import VersionConflict as Conflict
from domain.customer import CustomerErasedError
from services.access.rules import Forbidden
from services.api.command_outcome import stored_nothing
from services.api.http_errors import BadQuery, BadRequest
from services.batch_refusals import BatchConflictError, ErasedSubjectError
from services.group_commit import StoreFailedError
from services.idempotency import BadIdempotencyKeyError, IdempotencyError

AGGREGATE = uuid.UUID(int=7)


def sqlite_error(code: int, message: str) -> sqlite3.Error:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # as sqlite3 sets it
    return error


def stored_by_eventsourcing(cause: BaseException) -> BaseException:
    """As an event store's write reaches a command: the recorder's (or the batch
    writer's) `OperationalError`, in the group committer's `StoreFailedError`."""
    persistence = OperationalError(str(cause))
    persistence.__cause__ = cause
    failed = StoreFailedError("the batch holding this command failed")
    failed.__cause__ = persistence
    return failed


REFUSALS: dict[str, BaseException] = {
    "validation": ValidationFailed("email", "not an e-mail address"),
    "version conflict": Conflict(AGGREGATE, 3, 4),
    "not found": NotFound("Customer", AGGREGATE),
    "invalid transition": InvalidTransition("the conversation is closed"),
    "a business rule": PermissionDenied("only the assignee may"),
    "the customer erased": CustomerErasedError("the customer was erased"),
    "the access model": Forbidden("agent:erase:any", "agents may not erase"),
    "a malformed header": BadRequest("If-Match must be an ETag"),
    "a malformed query": BadQuery("reason", "is sent twice"),
    "the key in use": IdempotencyError("idempotency-key-in-use", "still running"),
    "a malformed key": BadIdempotencyKeyError("bad-idempotency-key", "too long"),
    "a version taken, under the lock": BatchConflictError("taken", frozenset({AGGREGATE})),
    "a version taken, unnamed": IntegrityError("duplicate key"),
    "an erased subject, under the lock": ErasedSubjectError("erased", frozenset({AGGREGATE})),
    "SQLite's event store full": stored_by_eventsourcing(
        sqlite_error(sqlite3.SQLITE_FULL, "database or disk is full")
    ),
    "SQLite's event store locked": stored_by_eventsourcing(
        sqlite_error(sqlite3.SQLITE_BUSY, "database is locked")
    ),
    "SQLite's key store locked": sqlite_error(sqlite3.SQLITE_BUSY, "database is locked"),
    "PostgreSQL's key store locked": psycopg.errors.LockNotAvailable("lock timeout"),
    "PostgreSQL's key store full": psycopg.errors.DiskFull("could not extend file"),
    "a full disk": OSError(errno.ENOSPC, "No space left on device"),
}

UNKNOWN: dict[str, BaseException] = {
    "the commit's answer lost": stored_by_eventsourcing(
        psycopg.OperationalError("server closed the connection unexpectedly")
    ),
    "the batch writer's reconnects refused": OperationalError("connection failed"),
    "PostgreSQL's event store full": stored_by_eventsourcing(
        psycopg.errors.DiskFull("could not extend file")
    ),
    "PostgreSQL's event store locked": stored_by_eventsourcing(
        psycopg.errors.LockNotAvailable("lock timeout")
    ),
    "a key store out of reach": psycopg.OperationalError("connection refused"),
    "a query cancelled": psycopg.errors.QueryCanceled("statement timeout"),
    "a batch failed otherwise": StoreFailedError("the batch holding this command failed"),
    "an event store error": PersistenceError("something else"),
    "a bug": KeyError("oops"),
    "a request cancelled": asyncio.CancelledError(),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_a_refusal_releases_the_key(name: str) -> None:
    assert stored_nothing(REFUSALS[name])


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_an_outcome_unknown_keeps_the_key(name: str) -> None:
    assert not stored_nothing(UNKNOWN[name])


def test_a_refusal_is_read_from_the_exception_raised_not_its_causes() -> None:
    """Only the error raised is read as a decision: one that merely wraps a refusal (a
    bug in the code handling it) proves nothing (the commands raise theirs as they are,
    or `from None`)."""
    wrapper = RuntimeError("clean-up failed")
    wrapper.__cause__ = Conflict(AGGREGATE, 3, 4)
    assert not stored_nothing(wrapper)
