"""RFC 9457 problem+json for every error: ONE table from exception class to status.

`type` URIs are stable (clients switch on them); `title` is constant per type; `detail`
is for humans. Domain errors keep their own codes; errors raised here (authentication,
policy, idempotency, read-model waits) carry theirs. No client input may produce a 500:
anything unmapped is logged with its traceback and answered as a generic 500 problem,
except a full disk or database anywhere in its causes, which is a 503 `storage-full`
with `Retry-After` (nothing is wrong with the request; it works once space returns), and
a store held locked by another connection past its wait (SQLite's "database is locked",
PostgreSQL's `lock_timeout`), a 503 `storage-busy` with `Retry-After`: a backup or
another process's long write passes. A read-model query cancelled past its deadline
(`CRM_READ_QUERY_SECONDS`: PostgreSQL's `statement_timeout`, SQLite's interrupt) is a
503 `query-timeout` with `Retry-After` (the deadline, in whole seconds: the queries
ahead of a retry have met theirs by then): the server was too busy for it, or its filter
made it scan too much (then a narrower one answers); so is a read-model query that
waited as long for a place other principals' queries held, or for a turn of its
principal's held by such a wait (`SharedReadsBusy`: the server was too busy for it). A
principal whose own running read-model queries hold all its turns for as long
(`services.api.query_turns`) is a 429 `too-many-queries`: its own load, which waiting
for its queries to end relieves. A keyed retry while its key is held (409, `reason`
`idempotency-key-in-use`) says with `Retry-After` when the holder's lease runs out.
While the database cannot be reached (a PostgreSQL restart), every request that needs it
answers 503 `event-store-unavailable` with `Retry-After`: retrying is the right move.
So does a read of a read model whose projection has never run (503
`read-model-not-built`): an API started before its consumers, or a new read model.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import msgspec
import psycopg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.readmodel_store import ReadModelNotBuilt
from domain.base import (
    DomainError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
    VersionConflict,
)
from domain.codec import UnknownEventType
from domain.customer import CustomerErasedError
from services.access.rules import Forbidden
from services.access_log import AccessLogBacklogged
from services.batch_refusals import CommitUnknownError
from services.idempotency import BadIdempotencyKeyError, IdempotencyError, KeyInUseError
from services.read_deadline import QueryTimeoutError

PROBLEM_BASE = "https://crm-collab.example/problems/"
UNAVAILABLE_RETRY_AFTER_S = 2
"""What a 503 `event-store-unavailable` tells clients to wait: a restart takes seconds."""
MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger("crm.api")


class Unauthenticated(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """No bearer token, or one that names no active principal."""


class BadRequest(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """A header or parameter this API parses itself (If-Match, as_of...) is malformed."""


class BadQuery(BadRequest):
    """A query parameter the route does not take, or takes once and was sent twice
    (`services.api.request_guard`); names it as `field`, as a schema error does."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"query parameter {name[:40]!r} {why}")
        self.field = name[:40]


class UnsupportedMediaType(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """A request body that does not say it is JSON (`Content-Type: application/json`)."""


class UnsupportedContentCoding(UnsupportedMediaType):
    """A request body sent with a content coding (gzip...): the API reads bodies as sent,
    and says so with `Accept-Encoding: identity` (RFC 9110, 12.5.3)."""


class RequestNotReceived(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """The client stopped sending before its body's end (or was cut off, too slow:
    `services.http_request_bounds`); nobody reads the answer, the log line does."""


class ReadModelUnavailable(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """The read model behind this query is not wired into this process."""


class TooManyStreams(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """The principal holds as many event streams open as it may (`StreamSlots`)."""


class TooManyQueries(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """The principal's read-model queries held all its turns while this one waited as
    long as a query may run (`QueryTurns`); `retry_after`: that long, in whole seconds."""

    def __init__(self, message: str, retry_after: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SharedReadsBusy(QueryTimeoutError):  # noqa: N818 - reads as the problem it maps to
    """A read-model query waited its deadline of `seconds` for a place other principals'
    queries held (the worker thread, a list connection), or for its principal's turn
    while a query of its principal's waited so (`QueryTurns`): the server was too busy
    for it, not its caller. A 503 `query-timeout`, as a query cancelled past it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.args = (f"waited past the read deadline of {seconds:g} s for others' queries",)


class StreamsFull(Exception):  # noqa: N818 - reads as the problem it maps to
    """This process holds as many event streams, of all principals, as it may."""


class NotCaughtUp(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """The read model did not reach `min_position` within the read wait."""

    def __init__(self, position: int, applied: int, retry_after: float) -> None:
        super().__init__(f"read model at position {applied}, asked for {position}")
        self.retry_after = retry_after


# exception class -> (status, type slug, title); looked up along the class's MRO.
PROBLEMS: dict[type[BaseException], tuple[int, str, str]] = {
    ValidationFailed: (422, "validation-failed", "A field has an unacceptable value"),
    CustomerErasedError: (409, "customer-erased", "The customer was erased"),
    InvalidTransition: (409, "invalid-transition", "Not allowed in the current state"),
    VersionConflict: (409, "version-conflict", "The resource changed since it was read"),
    NotFound: (404, "not-found", "No such resource"),
    PermissionDenied: (403, "not-allowed", "A business rule forbids this actor"),
    DomainError: (422, "domain-rule-violated", "A business rule was violated"),
    Forbidden: (403, "forbidden", "The access model refused this request"),
    Unauthenticated: (401, "unauthenticated", "A valid bearer token is required"),
    BadRequest: (400, "bad-request", "The request is malformed"),
    UnsupportedMediaType: (415, "unsupported-media-type", "The body must be JSON"),
    UnsupportedContentCoding: (
        415,
        "unsupported-content-coding",
        "The body must be sent without Content-Encoding",
    ),
    RequestNotReceived: (408, "request-timeout", "The request was not received whole"),
    BadIdempotencyKeyError: (400, "bad-idempotency-key", "The Idempotency-Key is malformed"),
    IdempotencyError: (409, "idempotency-conflict", "The Idempotency-Key cannot be used"),
    UnknownEventType: (422, "unknown-event-type", "Unknown event type"),
    ReadModelUnavailable: (501, "read-model-unavailable", "Read model not available yet"),
    NotCaughtUp: (503, "not-caught-up", "The read model has not caught up yet"),
    ReadModelNotBuilt: (503, "read-model-not-built", "The read model has not been built yet"),
    TooManyStreams: (429, "too-many-streams", "Too many event streams open at once"),
    TooManyQueries: (429, "too-many-queries", "Too many read-model queries of this caller at once"),
    StreamsFull: (503, "streams-full", "The server holds as many event streams as it may"),
    AccessLogBacklogged: (
        503,
        "access-log-unavailable",
        "Reads of personal data wait until the access log is stored; retry later",
    ),
    ValidationException: (400, "invalid-request", "The request does not match the schema"),
}


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """The body of every error (RFC 9457); extension members depend on the type."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    field: str | msgspec.UnsetType = msgspec.UNSET
    rule: str | msgspec.UnsetType = msgspec.UNSET
    reason: str | msgspec.UnsetType = msgspec.UNSET
    expected_version: int | msgspec.UnsetType = msgspec.UNSET
    actual_version: int | msgspec.UnsetType = msgspec.UNSET


STORAGE_FULL = (503, "storage-full", "The server's storage is full; retry later")
STORAGE_RETRY_AFTER = "30"
STORAGE_BUSY = (
    503,
    "storage-busy",
    "A store this request needs stayed locked by another connection; retry shortly",
)
BUSY_RETRY_AFTER = "5"  # as long as the stores wait for a lock (`key_stores.LOCK_SECONDS`)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
STREAM_RETRY_AFTER = "5"  # a closed stream's slot is free as soon as the server sees it go
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
_OUTSIDE_THE_TABLE = [  # problems answered by other means than an exception class
    (413, "request-entity-too-large", "The body is larger than 1 MiB"),
    STORAGE_FULL,
    STORAGE_BUSY,
    QUERY_TIMEOUT,
    UNAVAILABLE,
    OUTCOME_UNKNOWN,
]


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for `statuses`, each naming the problem types it may carry."""
    kinds: dict[int, list[str]] = {}
    for status, slug, title in [*PROBLEMS.values(), *_OUTSIDE_THE_TABLE]:
        kinds.setdefault(status, []).append(f"`{PROBLEM_BASE}{slug}`: {title}")
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=MEDIA_TYPE,
            description="; ".join(sorted(set(kinds.get(status, ["an error"])))),
            generate_examples=False,
        )
        for status in statuses
    }


COMMAND_PROBLEMS = problem_responses(400, 401, 403, 404, 408, 409, 413, 415, 422, 503)
"""What any command may answer besides its success."""
READ_PROBLEMS = problem_responses(400, 401, 403, 404, 422, 501, 503)
"""What any read may answer besides its success."""
LIST_PROBLEMS = READ_PROBLEMS | problem_responses(429)
"""What a read of the read models (a list, search, timeline or statistic) may answer: a
read's problems, and 429 when its principal's own queries hold its turns too long
(`services.api.query_turns`)."""


def problem_for(error: BaseException) -> tuple[int, str, str]:
    for cls in type(error).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    for trouble, problem, _ in _STORE_TROUBLES:
        if trouble(error):
            return problem
    if isinstance(error, HTTPException):
        phrase = HTTPStatus(error.status_code).phrase
        return error.status_code, phrase.lower().replace(" ", "-"), phrase
    return 500, "internal-error", "Internal server error"


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
    API's read connections: `services.api.loop_reads`), as the reads raise them
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


def _extensions(error: BaseException) -> dict[str, Any]:
    """Machine-readable details a client can act on."""
    if isinstance(error, ValidationFailed | BadQuery):
        return {"field": error.field}
    if isinstance(error, VersionConflict):
        return {"expected_version": error.expected, "actual_version": error.actual}
    if isinstance(error, Forbidden):
        return {"rule": error.rule}
    if isinstance(error, IdempotencyError):
        return {"reason": error.reason}
    if isinstance(error, ValidationException) and (errors := _schema_errors(error)):
        return {"field": errors[0].get("key"), "errors": errors}
    return {}


_OPERATORS = {
    slug for _, slug, _ in (STORAGE_FULL, STORAGE_BUSY, QUERY_TIMEOUT, UNAVAILABLE, OUTCOME_UNKNOWN)
}
"""Problems of the stores, logged for operators and answered by their titles alone: a
driver's text names the database's host and port (`connection to server at "10.0.0.5",
port 5432 failed`), tables and statements."""


def problem_response(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    status, slug, title = problem_for(error)
    storage = slug in _OPERATORS
    if storage:
        log.warning(slug.replace("-", "_"), error=repr(error))  # an operator's problem, no bug
    elif status >= 500 and not isinstance(error, _EXPECTED):
        log.error("unhandled", error=repr(error), exc_info=error)
    detail = title if status == 500 or storage else _detail(error)  # their text: internals
    if slug == OUTCOME_UNKNOWN[1]:
        keyed = "idempotency-key" in request.headers
        detail += KEYED_UNKNOWN if keyed else UNKEYED_UNKNOWN
    elif slug == STORAGE_FULL[1]:
        _note_storage_full(request)
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    body |= {"instance": request.url.path} | _extensions(error)
    headers = _headers(error)
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _note_storage_full(request: Request[Any, Any, Any]) -> None:
    """For `/readyz` (`services.storage_refusals`): the API's services note it, and their
    positions say when a command commits again (no services: a bare request, as unit
    tests build)."""
    app = request.scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    if services is not None:
        services.storage_refusals.refused(services.positions)


def _detail(error: BaseException) -> str:
    if isinstance(error, ValidationException):
        return _schema_detail(error)
    if isinstance(error, HTTPException):
        return str(error.detail)
    return str(error) or type(error).__name__


def _schema_detail(error: ValidationException) -> str:
    """Which parameters failed, by name. The framework's own detail repeats the request's
    URL with its query string, so a 400 for one parameter repeated every other value
    sent with it: the e-mail, phone or name of a search with a malformed `limit`."""
    errors = _schema_errors(error)
    named = [f"{e.get('source', '')} {e.get('key', '')}".strip() for e in errors]
    return "Validation failed for " + (", ".join(named) or "the request")


def _schema_errors(error: ValidationException) -> list[dict[str, Any]]:
    """The framework's list of what failed (`message`, `key`, `source`), as builtins."""
    errors = msgspec.to_builtins(error.extra or [], str_keys=True, enc_hook=str)
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


_EXPECTED = (NotCaughtUp, ReadModelUnavailable, ReadModelNotBuilt, AccessLogBacklogged)
"""5xx answers that are no bug (with a database out of reach, `unavailable`): not logged
as unhandled (the request line has them)."""


def _headers(error: BaseException) -> dict[str, str]:
    retry_after = _retry_after(error)
    if retry_after is not None:
        return {"Retry-After": retry_after}
    if isinstance(error, Unauthenticated):
        return {"WWW-Authenticate": 'Bearer realm="crm"'}
    if isinstance(error, UnsupportedContentCoding):
        return {"Accept-Encoding": "identity"}
    if isinstance(error, HTTPException) and error.headers:
        return dict(error.headers)
    return {}


def _retry_after(error: BaseException) -> str | None:
    """Seconds a client should wait before trying again, for errors that pass by."""
    if isinstance(error, NotCaughtUp):
        return str(max(1, round(error.retry_after)))
    if isinstance(error, TooManyStreams | StreamsFull):
        return STREAM_RETRY_AFTER
    if isinstance(error, TooManyQueries | KeyInUseError):
        return error.retry_after
    if deadline := next((c for c in causes(error) if isinstance(c, QueryTimeoutError)), None):
        return deadline.retry_after
    if isinstance(error, AccessLogBacklogged | ReadModelNotBuilt):
        return STORAGE_RETRY_AFTER
    return next((after for trouble, _, after in _STORE_TROUBLES if trouble(error)), None)


_STORE_TROUBLES = (
    (outcome_unknown, OUTCOME_UNKNOWN, str(UNAVAILABLE_RETRY_AFTER_S)),  # first: it may be
    (storage_full, STORAGE_FULL, STORAGE_RETRY_AFTER),  # stored, whatever the last try met
    (timed_out, QUERY_TIMEOUT, QUERY_RETRY_AFTER),
    (busy, STORAGE_BUSY, BUSY_RETRY_AFTER),
    (unavailable, UNAVAILABLE, str(UNAVAILABLE_RETRY_AFTER_S)),  # last: the others are too
)
"""A store's passing troubles, the first that matches answering: its problem, and what
it tells clients to wait."""


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    DomainError: problem_response,
    Forbidden: problem_response,
    Unauthenticated: problem_response,
    BadRequest: problem_response,
    UnsupportedMediaType: problem_response,
    IdempotencyError: problem_response,
    UnknownEventType: problem_response,
    ReadModelUnavailable: problem_response,
    NotCaughtUp: problem_response,
    ReadModelNotBuilt: problem_response,
    TooManyStreams: problem_response,
    TooManyQueries: problem_response,
    QueryTimeoutError: problem_response,
    StreamsFull: problem_response,
    RequestNotReceived: problem_response,
    AccessLogBacklogged: problem_response,
    HTTPException: problem_response,
    **dict.fromkeys(DATABASE_UNAVAILABLE, problem_response),
    500: problem_response,  # last resort: anything unmapped, logged with its traceback
}
