"""A command's answer (`CommandAnswer`, made without the framework's general path) is
what Litestar's own `Response(result, status_code=..., headers={"ETag": ...})` sends:
the same ASGI messages, byte for byte, and the same `ASGIResponse` attributes. A route
that adds a header or a cookie of its own, or an `after_request` hook that changes the
answer, gets the framework's path, and the same messages too."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar import Litestar, Request, Response, post
from litestar.datastructures import Cookie, ResponseHeader
from litestar.enums import MediaType
from litestar.response.base import ASGIResponse

from services.api import command_answer
from services.api.command_answer import CommandAnswer, Sent, TaggedAnswer
from services.api.deps import answer, tagged
from services.api.views import ConversationView, CustomerView, MessageView, OrderView
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


def counted(monkeypatch: pytest.MonkeyPatch) -> list[Sent]:
    """The answers made without the framework's path, from now on."""
    made: list[Sent] = []

    class Counted(Sent):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(command_answer, "Sent", Counted)
    return made


@pytest.mark.parametrize("route", ["plain", "header", "cookie", "hooked"])
@pytest.mark.parametrize("status", [200, 201])
@pytest.mark.parametrize("name", list(RESULTS))
def test_a_command_answer_is_sent_as_the_framework_sends_it(
    route: str, status: int, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = counted(monkeypatch)
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


def views() -> dict[str, Any]:
    """What read routes answer (`deps.tagged`): views holding every kind of value they
    hold (UUIDs, times, exact amounts, None, nested views, an encoded slice of messages),
    and a page with no `version` of its own read (ETag "0")."""
    at = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
    order = OrderView(
        order_id="o-1",
        amount=Decimal("0.10000000000000001"),
        currency="EUR",
        status="paid",
        ordered_at=at,
        updated_at=at,
    )
    customer = CustomerView(
        id=UUID(int=5),
        version=7,
        name='Zoë \u2028 "quoted"',
        company=None,
        email="a@b.c",
        phone="[masked]",
        address=None,
        owner_department="sales",
        owner_agent=None,
        shared_with=["support"],
        tags=["a", "b"],
        consents={"email": True, "sms": False},
        orders=[order],
        archived=False,
        erased=False,
        created_on=at,
        modified_on=None,
    )
    message = MessageView(
        message_id="m/1",
        kind="message",
        direction="in",
        author="x",
        content="\x7f\u00e9",
        sent_at=at,
        corrected=False,
        retracted=False,
        reason=None,
    )
    conversation = ConversationView(
        id=UUID(int=9),
        version=12,
        customer_id=None,
        channel="chat",
        subject="s",
        department="support",
        agent=None,
        participants=["p"],
        status="open",
        messages=msgspec.Raw(msgspec.json.encode([message, message])),  # type: ignore[arg-type]
        handoffs=0,
        outcome=None,
        summary=None,
        opened_at=at,
        closed_at=None,
        last_csat=None,
        last_nps=10,
    )
    return {"customer": customer, "conversation": conversation,
            "unversioned": {"items": [1, "two", None]}}  # fmt: skip


@pytest.mark.parametrize("route", ["plain", "header", "cookie", "hooked"])
@pytest.mark.parametrize("name", list(views()))
def test_a_read_answer_is_sent_as_the_framework_sends_it(
    route: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status too: a view's answer takes its route's (201 for these POST routes)."""
    made = counted(monkeypatch)
    view, path = views()[name], f"/{route}"

    def theirs(view: Any, _: int) -> Response[Any]:
        return Response(view, headers={"ETag": f'"{getattr(view, "version", 0)}"'})

    def ours(view: Any, _: int) -> Response[Any]:
        return tagged(view)

    expected = asyncio.run(messages(Litestar(routes(theirs, view, 200)), path))
    assert asyncio.run(messages(Litestar(routes(ours, view, 200)), path)) == expected
    assert expected[0]["status"] == 201
    assert len(made) == (route == "plain"), "only a route adding nothing skips the framework"


@pytest.mark.parametrize("name", list(views()))
def test_a_tagged_answer_is_the_response_the_framework_makes(name: str) -> None:
    """`TaggedAnswer.__init__` leaves every attribute `Response.__init__` would."""
    view = views()[name]
    theirs = Response(view, headers={"ETag": f'"{getattr(view, "version", 0)}"'})
    ours = tagged(view)
    assert type(ours) is TaggedAnswer
    for attribute in Response.__slots__:
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
