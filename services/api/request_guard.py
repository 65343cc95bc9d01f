"""What a request must be before any route parses it: a query of the parameters its
route takes, each once and without NUL characters, and a body that is JSON, said so,
sent unencoded, and shallow.

Runs as the app's `before_request` hook (`RequestGuard`), ahead of parameter and body
decoding, so hostile input is refused cheaply and the same way on every route:
* a route that names its caller (the `caller`, `reader` and `call` dependencies) first
  authenticates it (`services.api.deps.authenticate`): a request without a valid token
  is a 401 whatever else it sends, and nothing of it is parsed or read (red team: a bad
  body or query was a 400 or 415, and the body, up to 1 MiB, read and decoded, before
  the token was looked at);
* a query parameter the route does not declare is a 400 naming it and those it takes
  (the framework ignored it: `/v1/stats/tasks?from=&to=` answered all-time figures as
  if the range applied), and so is one sent twice that the route takes once (the
  framework used the last value without a word). What each route of the OpenAPI
  document takes is read once, when the app is built, from what the framework itself
  extracts for it (its signature's and its dependencies' parameters, `QueryRule`), so
  the document and the rule cannot disagree; a request with a query pays ~1 us for it,
  one without none. Routes outside the document (the console's files, `/docs`,
  `/openapi.json`) take any query;
* a query parameter holding a NUL character (`%00`) is a 400. PostgreSQL text cannot
  hold one, so a filter such as `?tag=a%00b` would otherwise fail in the database (a
  500) on PostgreSQL while matching nothing on SQLite;
* an integer query parameter or header a route declares (`?min_position=`, `?after=`,
  `?limit=`, a history's `?cursor=`, `Last-Event-ID`) holds a whole number as this API
  writes one (`domain.validation.whole_number`: ASCII digits, no sign or leading zero,
  at most 2**63 - 1), else a 400 naming it: the framework reads one as a JSON number,
  so `1e3` was 1000 and `-0` was 0;
* a time query parameter a route declares (`?as_of=`, `?from=`, `?to=`) holds an RFC
  3339 time with a zone, read as a body's is (`domain.validation.instant_text`), else a
  400 naming it: the framework read a number as a Unix timestamp, so `?from=1e9` was
  2001-09-09 and `?as_of=4e9` answered a customer "as of" 2096;
* an id in a path (`/v1/customers/{customer_id}`) is written as a body's is
  (`domain.validation.UUID_TEXT`, as `uuid_text` reads one), else a 404, as any path
  segment that is no id is: Python's `UUID`, which the framework reads it with, took
  fullwidth and Arabic-Indic digits, braces and `urn:uuid:`, and `+` or `_` among 32
  characters, naming another id;
* a body with a `Content-Encoding` (other than `identity`) is a 415 with
  `Accept-Encoding: identity`: the API decodes none, so one labelled gzip was read as
  plain JSON, and one really gzipped failed as malformed JSON;
* a body declared twice (two `Content-Type` lines: the framework would read the first)
  is a 400, as two lines of any header that comes once are (`only_line`);
* a body that is not declared `application/json` is a 415, and so is one declared in
  a charset other than UTF-8 (`charset=latin-1`, `utf-16`: JSON is UTF-8, RFC 8259, and
  such a body was read as UTF-8 whatever it said); one nested deeper than `MAX_DEPTH` is
  a 400 (msgspec would otherwise recurse until Python's limit). The size
  bound (`MAX_BODY_BYTES`, 413) is Litestar's own `request_max_body_size`; a body cut
  short (the client gone, or too slow: `services.http_request_bounds`) is a 408.

Bodies are otherwise checked by the command classes' schemas and the domain (which
refuses control characters in text).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from litestar import Litestar, Request
from litestar._kwargs import KwargsModel
from litestar._kwargs.parameter_definition import ParameterDefinition
from litestar._parsers import parse_query_string
from litestar.exceptions import InternalServerException, NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.routes import HTTPRoute
from litestar.types import Scope
from litestar.types.internal_types import PathParameterDefinition
from litestar.typing import FieldDefinition

from domain.base import ValidationFailed
from domain.validation import UUID_TEXT, instant_text, whole_number
from services.api.http_errors import (
    BadQuery,
    BadRequest,
    RequestNotReceived,
    UnsupportedContentCoding,
    UnsupportedMediaType,
)

MAX_DEPTH = 32
MAX_BODY_BYTES = 1_048_576
_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_UTF_8 = frozenset({"utf-8", "utf8"})
AUTHENTICATED = frozenset({"caller", "reader", "call"})
"""The dependencies that name the caller: a route taking one needs a valid token."""
Authenticate = Callable[[Request[Any, Any, Any]], Awaitable[object]]
"""Resolves a request's token to its caller (raising `Unauthenticated`), kept in the
scope's state as `caller` for the dependencies."""


@dataclass(frozen=True, slots=True)
class QueryRule:
    """The query parameters one route takes, those of them it takes as a list, those
    that are integers and those that are times."""

    names: frozenset[str]
    lists: frozenset[str]
    integers: frozenset[str] = frozenset()
    times: frozenset[str] = frozenset()

    @classmethod
    def of(cls, model: KwargsModel, handler: BaseRouteHandler) -> QueryRule | None:
        """What the framework extracts for a route (None: it takes the whole query)."""
        if "query" in model.expected_reserved_kwargs:
            return None
        query = model.expected_query_params
        names = frozenset(p.field_alias for p in query)
        lists = frozenset(model.sequence_query_parameter_names)
        integers = declared_parameters(query, handler, int)
        return cls(names, lists, integers, declared_parameters(query, handler, datetime))

    def check(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Refuse a name this route does not take, then one it takes once sent again
        (the first in the query), then an integer or a time not written as one. A query
        that passes costs a set of its names, two comparisons and a look at each integer
        and time."""
        sent = {name for name, _ in pairs}
        if not sent <= self.names:
            name = next(name for name, _ in pairs if name not in self.names)
            takes = ", ".join(sorted(self.names)) or "none"
            raise BadQuery(name, f"is not one this route takes (it takes {takes})")
        if len(sent) < len(pairs):
            seen: set[str] = set()
            for name, _ in pairs:
                if name in seen and name not in self.lists:
                    times = sum(given == name for given, _ in pairs)
                    raise BadQuery(name, f"is sent {times} times: send it once")
                seen.add(name)
        for name, value in pairs:
            read = self.reader(name)
            if read is not None:
                try:
                    read(value, name)
                except ValidationFailed as refused:
                    raise BadQuery(name, refused.reason) from None

    def reader(self, name: str) -> Callable[[str, str], object] | None:
        """How parameter `name` is written, where the framework would read it leniently."""
        if name in self.integers:
            return whole_number
        return instant_text if name in self.times else None


def declared_parameters(
    parameters: set[ParameterDefinition], handler: BaseRouteHandler, kind: type
) -> frozenset[str]:
    """The names, as sent, of the `parameters` that `handler` declares of type `kind`
    (`int`, `int | None`; `datetime`...)."""
    declared = handler.parsed_fn_signature.parameters
    return frozenset(
        p.field_alias for p in parameters if is_declared(declared.get(p.field_name), kind)
    )


def is_declared(field: FieldDefinition | None, kind: type) -> bool:
    if field is None:  # a dependency's parameter (If-Match, Idempotency-Key: text)
        return False
    types = {inner.annotation for inner in field.inner_types} or {field.annotation}
    return types - {type(None)} == {kind}


def path_ids(route: HTTPRoute) -> tuple[int, ...]:
    """Where the ids stand among a route's path segments, counted from its end."""
    parts = route.path_components
    return tuple(
        index - len(parts)
        for index, part in enumerate(parts)
        if isinstance(part, PathParameterDefinition) and part.type is UUID
    )


class RequestGuard:
    """The app's `before_request` hook; `learn(app)` once the app is built."""

    def __init__(self, authenticate: Authenticate) -> None:
        self._authenticate = authenticate
        self.authenticated: set[BaseRouteHandler] = set()
        self.queries: dict[BaseRouteHandler, QueryRule | None] = {}
        self.integer_headers: dict[BaseRouteHandler, frozenset[str]] = {}
        self.ids: dict[BaseRouteHandler, tuple[int, ...]] = {}

    def learn(self, app: Litestar) -> None:
        """What each route of the OpenAPI document takes, as the framework resolved it."""
        for route in app.routes:
            if isinstance(route, HTTPRoute):
                for handler, model in route.route_handler_map.values():
                    if any(d.key in AUTHENTICATED for b in model.dependency_batches for d in b):
                        self.authenticated.add(handler)
                    if handler.resolve_include_in_schema():
                        self.queries[handler] = QueryRule.of(model, handler)
                        headers = declared_parameters(model.expected_header_params, handler, int)
                        if headers:
                            self.integer_headers[handler] = headers
                        if ids := path_ids(route):
                            self.ids[handler] = ids

    async def __call__(self, request: Request[Any, Any, Any]) -> None:
        """Refuse a hostile path, query, header or body; None lets the route run."""
        handler = request.scope["route_handler"]
        if handler in self.authenticated:
            request.scope["state"]["caller"] = await self._authenticate(request)
        if ids := self.ids.get(handler):
            refuse_unwritten_ids(request.scope["path"], ids)
        raw = request.scope["query_string"]
        if raw:
            if raw.find(b"%00") != -1 or raw.find(b"\x00") != -1:  # 2x faster than `in`
                refuse_nul(parse_query_string(raw))
            if rule := self.queries.get(handler):
                rule.check(parse_query_string(raw))  # cached: the route's parse reuses it
        if headers := self.integer_headers.get(handler):
            refuse_unwritten_integers(request, headers)
        await guard_body(request)


def refuse_unwritten_ids(path: str, ids: tuple[int, ...]) -> None:
    """A 404 when an id in `path` (at `ids`, from its end) is not written as ids are
    (`UUID_TEXT`, as `uuid_text` reads one: the framework makes the `UUID`)."""
    segments = [segment for segment in path.split("/") if segment]  # as the router splits
    for index in ids:
        if not UUID_TEXT.fullmatch(segments[index]):
            raise NotFoundException()


def refuse_unwritten_integers(request: Request[Any, Any, Any], names: frozenset[str]) -> None:
    """A 400 naming an integer header not written as this API writes whole numbers."""
    for name in names:
        for value in request.headers.getall(name, []):
            try:
                whole_number(value, name)
            except ValidationFailed as refused:
                raise BadRequest(f"{name} {refused.reason}") from None


def refuse_nul(pairs: Sequence[tuple[str, str]]) -> None:
    """Refuse a query string that decodes to a NUL character anywhere."""
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise BadRequest(f"query parameter {name[:40]!r} must not contain NUL characters")


async def guard_body(request: Request[Any, Any, Any]) -> None:
    """Refuse a body that is not JSON or is nested too deep; None lets the route run."""
    if request.method not in _WITH_BODY:
        return
    try:
        body = await request.body()
    except InternalServerException:  # Litestar's word for the client gone mid-body
        raise RequestNotReceived("the connection closed before the body's end") from None
    if not body.strip():
        return
    scope = request.scope  # its header lines read as they are: no `Headers` built
    if codings := content_codings(sent_lines(scope, b"content-encoding")):
        raise UnsupportedContentCoding(
            f"send the body without Content-Encoding (this API reads it as sent), "
            f"not {', '.join(codings)[:60]!r}"
        )
    require_json(only_line(sent_lines(scope, b"content-type"), "Content-Type") or "")
    if nesting(body) > MAX_DEPTH:
        raise BadRequest(f"the JSON body is nested deeper than {MAX_DEPTH} levels")


def require_json(content_type: str) -> None:
    """Refuse a body not declared JSON, or declared in a charset other than UTF-8."""
    media, *parameters = content_type.split(";")
    media = media.strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {media[:60]!r}")
    for charset in charsets(parameters):
        if charset not in _UTF_8:
            raise UnsupportedMediaType(
                f"send the body in UTF-8, as JSON is (RFC 8259), not charset {charset[:40]!r}"
            )


def only_line(sent: Sequence[str], name: str) -> str | None:
    """The one line of header `name` in `sent`, of a header that comes once
    (Authorization, Content-Type, Idempotency-Key), None when absent. The framework would
    read the first of two lines: two are ambiguous, whichever the sender meant, so they
    are a 400 naming the header."""
    if len(sent) > 1:
        raise BadRequest(f"send one {name} header, not {len(sent)}")
    return sent[0] if sent else None


def sent_lines(scope: Scope, name: bytes) -> list[str]:
    """Every line of header `name` (lower case), as the framework's `Headers` gives them
    (names matched in any case, values decoded as Latin-1), read from the scope's list:
    building `Headers` decodes every line for the few a request reads (a GET its
    Authorization, a command its Content-Type, Content-Encoding, If-Match and
    Idempotency-Key too: `deps.command_call`). The lines are sorted by name in one pass,
    kept in the scope's state for the request's next look-up (a command makes six)."""
    state: dict[str, Any] | None = scope.get("state")
    by_name: dict[bytes, list[str]] | None = None if state is None else state.get(_LINES)
    if by_name is None:
        by_name = {}
        for key, value in scope["headers"]:
            by_name.setdefault(key.lower(), []).append(value.decode("latin-1"))
        if state is not None:
            state[_LINES] = by_name
    return by_name.get(name) or []


_LINES = "header_lines"  # the scope state's key of `sent_lines`' lines by name


def charsets(parameters: Sequence[str]) -> list[str]:
    """The values of the `charset` parameters among a media type's, unquoted and
    lower-cased (a body may declare none: JSON is UTF-8)."""
    pairs = (parameter.partition("=") for parameter in parameters)
    return [
        value.strip().strip('"').lower()
        for name, _, value in pairs
        if name.strip().lower() == "charset"
    ]


def content_codings(lines: Sequence[str]) -> list[str]:
    """The codings a body says it was compressed with, over every `Content-Encoding`
    line (`identity` is none)."""
    listed = ",".join(lines).lower().split(",")
    return [coding for coding in map(str.strip, listed) if coding not in ("", "identity")]


def nesting(body: bytes) -> int:
    """How deep arrays and objects nest in `body` (brackets inside strings do not count).
    Bodies with few brackets, as every real command is, cost two byte counts."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return 0
    deepest = depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", body)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest
