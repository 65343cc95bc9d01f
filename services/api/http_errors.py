"""The exceptions the HTTP layer raises itself, each a problem type of `problem_table`.

Domain errors live beside their aggregates and the access model's `Forbidden` beside its
rules; these are the API's own refusals: authentication, a malformed header, parameter or
body, a body not received whole, a read model not wired in or not caught up, a principal
holding too many streams or queries, a server holding as many streams as it may. Each
carries what its answer needs (`field`, `retry_after`). I/O: none.
"""

from __future__ import annotations

from services.read_deadline import QueryTimeoutError


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
