"""Where an exception becomes its answer: the problem+json response and the handlers map.

Every error the API answers goes through `problem_response`: its status, type and title
from the one table (`services.api.problem_table`), a `detail` for humans (a title alone
for a 500 and for a store's troubles, whose text names internals: hosts, tables,
statements), the members a client can act on (`field`, `rule`, `reason`, versions) and
the headers that say what to do next (`Retry-After`, `WWW-Authenticate`,
`Accept-Encoding`). Anything unmapped is logged with its traceback and answered as a
generic 500 problem; a store's trouble is logged for operators, without one.
`EXCEPTION_HANDLERS` hands the app every class the table maps. In: a request and an
exception. Out: a `Response`. I/O: log lines, and a full disk noted for `/readyz`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.readmodel_store import ReadModelNotBuilt
from domain.base import DomainError, ValidationFailed, VersionConflict
from domain.codec import UnknownEventType
from services.access.rules import Forbidden
from services.access_log import AccessLogBacklogged
from services.api.http_errors import (
    BadQuery,
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
from services.api.problem_table import MEDIA_TYPE, PROBLEM_BASE, problem_for
from services.api.store_troubles import (
    KEYED_UNKNOWN,
    OUTCOME_UNKNOWN,
    QUERY_TIMEOUT,
    STORAGE_BUSY,
    STORAGE_FULL,
    STORAGE_RETRY_AFTER,
    STORE_TROUBLES,
    UNAVAILABLE,
    UNKEYED_UNKNOWN,
    causes,
)
from services.idempotency import IdempotencyError, KeyInUseError
from services.read_deadline import QueryTimeoutError

log = structlog.get_logger("crm.api")
STREAM_RETRY_AFTER = "5"  # a closed stream's slot is free as soon as the server sees it go


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
    return next((after for trouble, _, after in STORE_TROUBLES if trouble(error)), None)


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
