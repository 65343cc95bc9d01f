"""A header read from the scope's own list (`request_guard.sent_lines`, what
`deps.bearer_token` reads the Authorization lines with, so a GET builds no `Headers`)
gives what the framework's `Headers` gives: the lines of that name in any case, in
order, decoded as Latin-1; and two Authorization lines are still a 400."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Request
from litestar.datastructures import Headers

from services.api.deps import bearer_token
from services.api.http_errors import BadRequest, Unauthenticated
from services.api.request_guard import sent_lines

LISTS = {
    "none": [(b"host", b"h")],
    "one": [(b"host", b"h"), (b"authorization", b"Bearer t0k")],
    "upper case": [(b"AUTHORIZATION", b"Bearer t0k")],
    "mixed case, two": [(b"Authorization", b"Bearer a"), (b"x", b"y"), (b"authorization", b"b")],
    "latin-1": [(b"authorization", b"Bearer \xe9\xff\x00")],
    "other names alike": [(b"authorization2", b"x"), (b"x-authorization", b"y"), (b"author", b"z")],
    "empty": [(b"authorization", b"")],
}


def request(headers: list[tuple[bytes, bytes]]) -> Request[Any, Any, Any]:
    return Request({"type": "http", "headers": headers, "state": {}})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(LISTS))
def test_the_lines_are_those_the_frameworks_headers_give(name: str) -> None:
    headers = LISTS[name]
    expected = Headers(headers).getall("authorization", [])
    assert sent_lines({"headers": headers}, b"authorization") == expected  # type: ignore[arg-type]


def test_a_token_is_read_from_one_line_and_two_lines_are_a_400() -> None:
    assert bearer_token(request(LISTS["one"])) == "t0k"
    assert bearer_token(request(LISTS["upper case"])) == "t0k"
    with pytest.raises(BadRequest, match="send one Authorization header, not 2"):
        bearer_token(request(LISTS["mixed case, two"]))
    for name in ("none", "empty", "other names alike"):
        with pytest.raises(Unauthenticated):
            bearer_token(request(LISTS[name]))


def test_lines_kept_for_the_request_are_those_of_each_name() -> None:
    """Looked up by several names in one request (its scope's state keeps them sorted
    by name), each name's lines are still those `Headers` gives."""
    for headers in LISTS.values():
        scope = {"headers": headers, "state": {}}
        for name in ("authorization", "host", "x", "author", "content-type"):
            expected = Headers(headers).getall(name, [])
            assert sent_lines(scope, name.encode()) == expected  # type: ignore[arg-type]
