"""What a request body must be before any route parses it: JSON, said so, and shallow.

Runs as the app's `before_request` hook, ahead of body decoding and authentication, so a
hostile body is refused cheaply and the same way on every route: a body that is not
declared `application/json` is a 415, one nested deeper than `MAX_DEPTH` a 400 (msgspec
would otherwise recurse until Python's limit). The size bound (`MAX_BODY_BYTES`, 413) is
Litestar's own `request_max_body_size`. Bodies are otherwise checked by the command
classes' schemas and the domain.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

from services.api.errors import BadRequest, UnsupportedMediaType

MAX_DEPTH = 32
MAX_BODY_BYTES = 1_048_576
_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


async def guard_body(request: Request[Any, Any, Any]) -> None:
    """Refuse a body that is not JSON or is nested too deep; None lets the route run."""
    if request.method not in _WITH_BODY:
        return
    body = await request.body()
    if not body.strip():
        return
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {media[:60]!r}")
    if nesting(body) > MAX_DEPTH:
        raise BadRequest(f"the JSON body is nested deeper than {MAX_DEPTH} levels")


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
