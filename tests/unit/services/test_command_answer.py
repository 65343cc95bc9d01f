"""A command's answer (`CommandAnswer`, made without the framework's general path) is
what Litestar's own `Response(result, status_code=..., headers={"ETag": ...})` sends:
the same ASGI messages, byte for byte, and the same `ASGIResponse` attributes. A route
that adds a header or a cookie of its own, or an `after_request` hook that changes the
answer, gets the framework's path, and the same messages too."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from litestar import Litestar, Request, Response, post
from litestar.datastructures import Cookie, ResponseHeader
from litestar.enums import MediaType
from litestar.response.base import ASGIResponse

from services.api import command_answer
from services.api.command_answer import CommandAnswer, Sent
from services.api.deps import answer
from services.commands import CommandResult

RESULTS = {
    "change": CommandResult(id=UUID(int=7), version=3, position=1_000),
    "message": CommandResult(id=UUID(int=2**128 - 1), version=12, position=2**63 - 1,
                             message_id="ffffffff-ffff-ffff-ffff-ffffffffffff/m/12"),
}  # fmt: skip


def theirs(result: CommandResult, status: int) -> Response[CommandResult]:
    """The answer as the framework's own `Response` made it."""
    return Response(result, status_code=status, headers={"ETag": f'"{result.version}"'})


def routes(make: Any, result: CommandResult, status: int) -> list[Any]:
    """The same routes answering `result` with `make`: plain, with a header or a cookie
    of their own, and one whose answer an `after_request` hook changes."""

    async def hook(response: Response[Any]) -> Response[Any]:
        response.headers["X-Hooked"] = "1"
        return response

    @post("/plain")
    async def plain() -> Response[CommandResult]:
        return make(result, status)  # type: ignore[no-any-return]

    @post("/header", response_headers=[ResponseHeader(name="X-A", value="1")])
    async def header() -> Response[CommandResult]:
        return make(result, status)  # type: ignore[no-any-return]

    @post("/cookie", response_cookies=[Cookie(key="k", value="v")])
    async def cookie() -> Response[CommandResult]:
        return make(result, status)  # type: ignore[no-any-return]

    @post("/hooked", after_request=hook)
    async def hooked() -> Response[CommandResult]:
        return make(result, status)  # type: ignore[no-any-return]

    return [plain, header, cookie, hooked]


async def messages(app: Litestar, path: str) -> list[dict[str, Any]]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [], "state": {},
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


@pytest.mark.parametrize("route", ["plain", "header", "cookie", "hooked"])
@pytest.mark.parametrize("status", [200, 201])
@pytest.mark.parametrize("name", list(RESULTS))
def test_a_command_answer_is_sent_as_the_framework_sends_it(
    route: str, status: int, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Sent] = []

    class Counted(Sent):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(command_answer, "Sent", Counted)
    result, path = RESULTS[name], f"/{route}"
    expected = asyncio.run(messages(Litestar(routes(theirs, result, status)), path))
    assert asyncio.run(messages(Litestar(routes(answer, result, status)), path)) == expected
    assert expected[0]["status"] == status
    assert len(made) == (route == "plain"), "only a route adding nothing skips the framework"


@pytest.mark.parametrize("status", [200, 201])
@pytest.mark.parametrize("name", list(RESULTS))
def test_its_asgi_response_is_the_one_the_framework_makes(status: int, name: str) -> None:
    """Every attribute `ASGIResponse.__init__` sets, as a route with nothing of its own
    asks for it (no cookies or headers, JSON)."""
    request: Request[Any, Any, Any] = Request({"type": "http", "state": {}})  # type: ignore[arg-type]
    asked: dict[str, Any] = {"cookies": [], "headers": {}, "media_type": MediaType.JSON}
    ours = CommandAnswer(RESULTS[name], status).to_asgi_response(None, request, **asked)
    them = theirs(RESULTS[name], status).to_asgi_response(None, request, **asked)
    assert type(ours) is Sent
    for attribute in ASGIResponse.__slots__:
        if attribute == "headers":
            assert ours.headers.headers == them.headers.headers
        else:
            assert getattr(ours, attribute) == getattr(them, attribute), attribute
    assert ours.encode_headers() is not ours.encode_headers()  # a list of its own each time
