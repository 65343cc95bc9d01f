"""RFC 9457 problem+json: ONE table from exception class to status, type and title.

`type` URIs are stable (clients switch on them); `title` is constant per type; `detail`
is for humans. Domain errors keep their own codes; errors raised by the API
(`services.api.http_errors`: authentication, policy, idempotency, read-model waits)
carry theirs. A read-model query that waited as long as a query may run for a place
other principals' queries held, or for a turn of its principal's held by such a wait
(`SharedReadsBusy`: the server was too busy for it), is a 503 `query-timeout`, as one
cancelled past its deadline. A principal whose own running read-model queries hold all
its turns for as long (`services.api.query_turns`) is a 429 `too-many-queries`: its own
load, which waiting for its queries to end relieves. A keyed retry while its key is held
(409, `reason` `idempotency-key-in-use`) says with `Retry-After` when the holder's lease
runs out. A read of a read model whose projection has never run is a 503
`read-model-not-built`: an API started before its consumers, or a new read model. A
store's passing troubles are found among an error's causes
(`services.api.store_troubles`); anything else unmapped is a 500.

In: an exception. Out: its (status, slug, title) (`problem_for`), and the OpenAPI
responses naming the problem types each status may carry (`problem_responses`).
I/O: none.
"""

from __future__ import annotations

from http import HTTPStatus

import msgspec
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

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
from services.api.http_errors import (
    BadRequest,
    NotCaughtUp,
    ReadModelUnavailable,
    RequestNotReceived,
    StreamsFull,
    TooManyQueries,
    TooManyStreams,
    Unauthenticated,
    UnsupportedContentCoding,
    UnsupportedMediaType,
)
from services.api.store_troubles import (
    OUTCOME_UNKNOWN,
    QUERY_TIMEOUT,
    STORAGE_BUSY,
    STORAGE_FULL,
    STORE_TROUBLES,
    UNAVAILABLE,
)
from services.idempotency import BadIdempotencyKeyError, IdempotencyError

PROBLEM_BASE = "https://crm-collab.example/problems/"
MEDIA_TYPE = "application/problem+json"


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
    for trouble, problem, _ in STORE_TROUBLES:
        if trouble(error):
            return problem
    if isinstance(error, HTTPException):
        phrase = HTTPStatus(error.status_code).phrase
        return error.status_code, phrase.lower().replace(" ", "-"), phrase
    return 500, "internal-error", "Internal server error"
