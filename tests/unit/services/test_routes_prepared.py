"""Routes prepared once (`services.api.routes_prepared`): a command route's arguments
made without the framework's dependency machinery and without building `Headers`, and
each route's exception handlers resolved once, answer every request exactly as the
framework's own path does (status and body), and leave the OpenAPI document as it was:
`call` still declares If-Match and Idempotency-Key."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

import msgspec
import pytest
from litestar import Litestar, Request, delete, patch, post
from litestar.datastructures import headers as litestar_headers
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from services.api.deps import IdempotencyKey, IfMatch
from services.api.error_responses import EXCEPTION_HANDLERS
from services.api.http_errors import BadRequest
from services.api.request_json import ApiRequest
from services.api.routes_prepared import CommandArguments, prepare_routes

THING = "6f9619ff-8b86-d011-b42d-00c04fc964ff"


class Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    score: int | None = None


Call = NamedDependency[dict[str, Any]]


def made_call(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What a `call` sees of its request (as `deps.command_call` reads it); a refusal
    for an If-Match of `"bad"`, after the body's (as a bad If-Match is)."""
    lines = [v.decode() for k, v in request.scope["headers"] if k == b"if-match"]
    if lines == ['"bad"']:
        raise BadRequest("bad If-Match")
    return {"path": request.scope["path"], "if_match": lines}


def call(
    request: Request[Any, Any, Any],
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    return made_call(request)


@post("/things/{thing_id:uuid}", status_code=201)
async def change(thing_id: FromPath[UUID], data: JSONBody[Body], call: Call) -> dict[str, Any]:
    return {"id": str(thing_id), "name": data.name, "score": data.score, "call": call}


@post("/things/{thing_id:uuid}/start", status_code=200)
async def start(thing_id: FromPath[UUID], call: Call) -> dict[str, Any]:
    return {"id": str(thing_id), "call": call}


@patch("/things/{thing_id:uuid}/parts/{part:str}")
async def part(
    thing_id: FromPath[UUID], part: FromPath[str], data: JSONBody[Body], call: Call
) -> dict[str, Any]:
    if part == "refused":
        raise BadRequest("no such part")
    return {"id": str(thing_id), "part": part, "name": data.name, "call": call}


@delete("/things/{thing_id:uuid}", status_code=200)
async def remove(
    thing_id: FromPath[UUID], call: Call, reason: Annotated[str, QueryParameter(min_length=1)]
) -> dict[str, Any]:
    return {"id": str(thing_id), "reason": reason, "call": call}


def app(prepared: bool) -> Litestar:
    built = Litestar(
        [change, start, part, remove],
        dependencies={"call": Provide(call, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=ApiRequest,
    )
    if prepared:
        prepare_routes(built, made_call)
    return built


JSON = [(b"content-type", b"application/json")]
REQUESTS: dict[str, tuple[str, str, bytes, list[tuple[bytes, bytes]]]] = {
    "a body": ("POST", f"/things/{THING}", b'{"name": "a", "score": 3}', JSON),
    "If-Match lines": ("POST", f"/things/{THING}", b'{"name": "a"}', [*JSON,
        (b"if-match", b'"3"'), (b"If-Match", b'"4"')]),
    "a refused If-Match": ("POST", f"/things/{THING}", b'{"name": "a"}', [*JSON,
        (b"if-match", b'"bad"')]),
    "a bad body before a refused If-Match": ("POST", f"/things/{THING}", b'{"name": 1}', [*JSON,
        (b"if-match", b'"bad"')]),
    "no body": ("POST", f"/things/{THING}", b"", JSON),
    "null": ("POST", f"/things/{THING}", b"null", JSON),
    "malformed": ("POST", f"/things/{THING}", b'{"name": ', JSON),
    "an unknown field": ("POST", f"/things/{THING}", b'{"name": "a", "x": 1}', JSON),
    "a score as text": ("POST", f"/things/{THING}", b'{"name": "a", "score": "3"}', JSON),
    "not UTF-8": ("POST", f"/things/{THING}", b'{"name": "\xff"}', JSON),
    "an id in capitals": ("POST", f"/things/{THING.upper()}", b'{"name": "a"}', JSON),
    "no body taken": ("POST", f"/things/{THING}/start", b"", []),
    "a body not taken": ("POST", f"/things/{THING}/start", b'{"name": "a"}', JSON),
    "a text parameter": ("PATCH", f"/things/{THING}/parts/p%20q", b'{"name": "b"}', JSON),
    "a refusal": ("PATCH", f"/things/{THING}/parts/refused", b'{"name": "b"}', JSON),
    "a query (the framework's)": ("DELETE", f"/things/{THING}?reason=old", b"", []),
    "a query missing": ("DELETE", f"/things/{THING}", b"", []),
}  # fmt: skip


async def answer(
    application: Litestar, method: str, path: str, body: bytes, headers: list[Any]
) -> list[dict[str, Any]]:
    raw_path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": raw_path.replace("%20", " "),
             "raw_path": raw_path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [*headers, (b"content-length", str(len(body)).encode())],
             "state": {}, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000)}  # fmt: skip
    received, messages = [], []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await application(scope, receive, send)  # type: ignore[arg-type]
    return messages


@pytest.fixture
def headers_built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the framework's `Headers` is built."""
    built = [0]
    original = litestar_headers.Headers.__init__

    def counted(self: litestar_headers.Headers, *args: Any, **kwargs: Any) -> None:
        built[0] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(litestar_headers.Headers, "__init__", counted)
    return built


@pytest.mark.parametrize("name", list(REQUESTS))
def test_a_prepared_route_answers_as_the_framework_does(name: str) -> None:
    method, path, body, headers = REQUESTS[name]
    expected = asyncio.run(answer(app(prepared=False), method, path, body, headers))
    assert asyncio.run(answer(app(prepared=True), method, path, body, headers)) == expected


def test_the_command_routes_take_their_arguments_without_the_frameworks_model() -> None:
    prepared = app(prepared=True)
    models = {
        (method, route.path): type(model).__name__
        for route in prepared.routes
        for method, (_, model) in getattr(route, "route_handler_map", {}).items()
        if route.path.startswith("/things") and method != "OPTIONS"
    }
    assert models == {
        ("POST", "/things/{thing_id:uuid}"): CommandArguments.__name__,
        ("POST", "/things/{thing_id:uuid}/start"): CommandArguments.__name__,
        ("PATCH", "/things/{thing_id:uuid}/parts/{part:str}"): CommandArguments.__name__,
        ("DELETE", "/things/{thing_id:uuid}"): "KwargsModel",  # a query: the framework's
    }


def test_a_command_builds_no_headers(headers_built: list[int]) -> None:
    method, path, body, headers = REQUESTS["If-Match lines"]
    asyncio.run(answer(app(prepared=False), method, path, body, headers))
    assert headers_built[0] > 0  # the framework's model extracts If-Match through them
    headers_built[0] = 0
    messages = asyncio.run(answer(app(prepared=True), method, path, body, headers))
    assert messages[0]["status"] == 201
    assert headers_built[0] == 0


def test_exception_handlers_are_resolved_once() -> None:
    prepared, plain = app(prepared=True), app(prepared=False)
    for built, once in ((prepared, True), (plain, False)):
        handler = built.route_handler_method_map["/things/{thing_id:uuid}"]["POST"]
        first, second = handler.resolve_exception_handlers(), handler.resolve_exception_handlers()
        assert first == second
        assert (first is second) is once


def test_the_openapi_document_is_the_same() -> None:
    prepared, plain = app(prepared=True), app(prepared=False)
    document = plain.openapi_schema.to_schema()
    assert prepared.openapi_schema.to_schema() == document
    parameters = document["paths"]["/things/{thing_id}"]["post"]["parameters"]
    assert {p["name"] for p in parameters} >= {"If-Match", "Idempotency-Key"}
