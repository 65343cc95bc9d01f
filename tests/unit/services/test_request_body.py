"""The API's request reads a body as Litestar's own does (`ApiRequest.whole_body`, a
path without the stream's generator for a body sent in one message): the same bytes,
the same 413 for a body declared or received over the route's `request_max_body_size`
(a declared one before any read), the same 400 for a `Content-Length` that is no
number, the same error for a client gone before the body's end (the guard's 408), and
the same number of messages received. Each script runs against both request classes
on one app, driven through ASGI messages as a server sends them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar import Litestar, Request, post
from litestar.exceptions import ClientException

from services.api.error_responses import EXCEPTION_HANDLERS
from services.api.request_guard import guard_body
from services.api.request_json import ApiRequest

LIMIT = 16


def sent(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


GONE = {"type": "http.disconnect"}

SCRIPTS: dict[str, tuple[str | None, list[dict[str, Any]]]] = {
    "one message": ("8", [sent(b'{"a": 1}')]),
    "no content-length": (None, [sent(b'{"a": 1}')]),
    "empty": ("0", [sent(b"")]),
    "exactly the limit": ("16", [sent(b"x" * LIMIT)]),
    "two chunks": ("8", [sent(b'{"a":', True), sent(b" 1}")]),
    "an empty chunk between": ("8", [sent(b'{"a":', True), sent(b"", True), sent(b" 1}")]),
    "the end empty": ("8", [sent(b'{"a": 1}', True), sent(b"")]),
    "a foreign message first": ("8", [{"type": "http.foo"}, sent(b'{"a": 1}')]),
    "declared over the limit": ("17", [sent(b"x" * 17)]),
    "declared over, sent less": ("9999", [sent(b"{}")]),
    "declared under, sent over": ("2", [sent(b"x" * 17)]),
    "one message over the limit": (None, [sent(b"x" * 17)]),
    "chunks over the limit": (None, [sent(b"x" * 10, True), sent(b"x" * 7)]),
    "content-length no number": ("seven", [sent(b'{"a": 1}')]),
    "gone first": ("8", [GONE]),
    "gone mid-body": ("8", [sent(b'{"a":', True), GONE]),
}


@post("/echo", status_code=200)
async def echo(request: Request[Any, Any, Any]) -> dict[str, int]:
    """The body's length, read twice (the second read is the first's)."""
    first = await request.body()
    again = await request.body()
    assert again is first
    return {"length": len(first)}


@post("/guarded", status_code=200)
async def guarded(request: Request[Any, Any, Any]) -> dict[str, int]:
    await guard_body(request)
    return {"length": len(await request.body())}


def app(request_class: type[Request[Any, Any, Any]]) -> Litestar:
    return Litestar(
        [echo, guarded],
        request_class=request_class,
        request_max_body_size=LIMIT,
        exception_handlers=EXCEPTION_HANDLERS,
    )


async def answer(
    application: Litestar, path: str, length: str | None, script: list[dict[str, Any]]
) -> tuple[int, bytes, int]:
    """The status and body the app answers `script` with, and how many messages it read."""
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", length.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers, "state": {},
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}  # fmt: skip
    pending = list(script)
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return pending.pop(0) if pending else GONE

    status, parts = [], []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        else:
            parts.append(message.get("body", b""))

    await application(scope, receive, send)  # type: ignore[arg-type]
    return status[0], b"".join(parts), read


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_a_body_is_read_as_litestar_reads_one(name: str) -> None:
    length, script = SCRIPTS[name]
    theirs, ours = app(Request), app(ApiRequest)
    for path in ("/echo", "/guarded"):
        expected = asyncio.run(answer(theirs, path, length, script))
        assert asyncio.run(answer(ours, path, length, script)) == expected


@pytest.mark.parametrize(
    ("name", "status"),
    [("one message", 200), ("two chunks", 200), ("declared over the limit", 413),
     ("declared under, sent over", 413), ("chunks over the limit", 413),
     ("content-length no number", 400), ("gone first", 408), ("gone mid-body", 408)],
)  # fmt: skip
def test_what_the_guard_answers(name: str, status: int) -> None:
    """A client gone before the body's end is the guard's 408, not a 500."""
    length, script = SCRIPTS[name]
    got, body, _ = asyncio.run(answer(app(ApiRequest), "/guarded", length, script))
    assert got == status, body
    if status == 413:
        assert body, "the 413 says why"
    if status == 200:
        assert body == b'{"length":8}'


def test_a_declared_body_over_the_limit_is_refused_before_any_read() -> None:
    length, script = SCRIPTS["declared over the limit"]
    assert asyncio.run(answer(app(ApiRequest), "/echo", length, script))[::2] == (413, 0)


LENGTHS = {
    "none": [],
    "one": [(b"content-length", b"8")],
    "upper case": [(b"Content-Length", b"8")],
    "two lines": [(b"content-length", b"8"), (b"content-length", b"9")],
    "spaces and a sign": [(b"content-length", b" +8 ")],
    "no number": [(b"content-length", b"seven")],
    "latin-1": [(b"content-length", b"\xb2")],
}


@pytest.mark.parametrize("name", list(LENGTHS))
def test_a_declared_length_is_read_as_litestar_reads_it(name: str) -> None:
    """From the scope's lines, without `Headers`: the same number, or the same 400."""
    scope = {"type": "http", "headers": [(b"host", b"h"), *LENGTHS[name]], "state": {}}

    def read(request_class: type[Request[Any, Any, Any]]) -> object:
        try:
            return request_class(scope).content_length  # type: ignore[arg-type]
        except ClientException as refused:
            return ("refused", refused.status_code, refused.detail)

    assert read(ApiRequest) == read(Request)
