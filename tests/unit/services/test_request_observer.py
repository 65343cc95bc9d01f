"""`RequestObserver` wraps the whole app: it adds the API's headers an answer does not
set itself and then the request's X-Request-Id, in one wrapper of `send`, and counts and
times each request under its method, route and status (the children of each label set
kept, not looked up again each request)."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest
import structlog
from litestar import Litestar, MediaType, Response, get
from litestar.testing import TestClient
from structlog.testing import LogCapture

from services.api import observability
from services.api.observability import Metrics, RequestObserver
from services.api.response_headers import API_HEADERS, DOCS_HEADERS, api_headers


@get("/plain", media_type=MediaType.TEXT, sync_to_thread=False)
def plain() -> str:
    return "plain"


@get("/own", sync_to_thread=False)
def own() -> Response[str]:
    return Response("own", media_type=MediaType.TEXT, headers={"Cache-Control": "no-cache"})


@get("/docs/page", media_type=MediaType.TEXT, sync_to_thread=False)
def docs() -> str:
    return "docs"


def served(metrics: Metrics) -> Litestar:
    app = Litestar([plain, own, docs])
    routes = [route.path for route in app.routes]
    app.asgi_handler = RequestObserver(app.asgi_handler, metrics, routes, api_headers)
    return app


def listed(headers: dict[str, str]) -> list[tuple[str, str]]:
    return [(name.lower(), value) for name, value in headers.items()]


def test_the_api_headers_an_answer_lacks_then_its_request_id_end_its_headers() -> None:
    rid = "0123456789abcdef0123456789abcdef"
    with TestClient(served(Metrics(lambda: 0.0))) as client:
        sent = {"X-Request-Id": rid}
        answers = {
            path: client.get(path, headers=sent)
            for path in ("/plain", "/own", "/docs/page", "/none")
        }
    for path, added in [
        ("/plain", API_HEADERS),
        ("/docs/page", DOCS_HEADERS),
        ("/none", API_HEADERS),
    ]:
        headers = answers[path].headers.multi_items()
        assert headers[-len(added) - 1 :] == [*listed(added), ("x-request-id", rid)], path
    own_headers = answers["/own"].headers.multi_items()
    assert [value for name, value in own_headers if name == "cache-control"] == ["no-cache"]
    missing = [h for h in listed(API_HEADERS) if h[0] != "cache-control"]
    assert own_headers[-len(missing) - 1 :] == [*missing, ("x-request-id", rid)]


def test_each_request_is_counted_and_timed_under_its_label_set() -> None:
    metrics = Metrics(lambda: 0.0)
    with TestClient(served(metrics)) as client:
        for path in ["/plain", "/plain", "/own", "/none", "/plain", "/none"]:
            client.get(path)
        client.post("/plain")  # 405: no route matched its method
    counts = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in metrics.registry.collect()
        if family.name == "crm_http_requests"
        for s in family.samples
        if s.name == "crm_http_requests_total"
    }
    assert counts == {
        ("GET", "/plain", "200"): 3,
        ("GET", "/own", "200"): 1,
        ("GET", "unmatched", "404"): 2,
        ("POST", "unmatched", "405"): 1,
    }
    timed = {
        (s.labels["method"], s.labels["route"]): s.value
        for family in metrics.registry.collect()
        if family.name == "crm_http_request_seconds"
        for s in family.samples
        if s.name == "crm_http_request_seconds_count"
    }
    assert timed == {
        ("GET", "/plain"): 3,
        ("GET", "/own"): 1,
        ("GET", "unmatched"): 2,
        ("POST", "unmatched"): 1,
    }


def test_a_server_logging_at_warning_fills_no_request_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The line's fields are worked out only when the line is written: a request's path
    is not even named at warning (the benchmark's level), and is at info."""
    named: list[object] = []
    app = served(Metrics(lambda: 0.0))
    observer = app.asgi_handler
    assert isinstance(observer, RequestObserver)
    naming = observer.logged_path
    observer.logged_path = lambda scope: named.append(scope) or naming(scope)  # type: ignore[assignment, func-returns-value]
    for level, lines in [(logging.WARNING, 0), (logging.INFO, 1)]:
        captured = LogCapture()
        wrapper = structlog.make_filtering_bound_logger(level)
        logger = structlog.wrap_logger(None, processors=[captured], wrapper_class=wrapper)
        monkeypatch.setattr(observability, "log", logger)
        with TestClient(app) as client:
            client.get("/plain")
        requests = [line for line in captured.entries if line["event"] == "request"]
        assert [line["path"] for line in requests] == ["/plain"] * lines
        assert len(named) == lines
        named.clear()


@get("/context", sync_to_thread=False)
def context() -> dict[str, object]:
    return structlog.contextvars.get_contextvars()


def test_a_request_logs_under_its_own_id_and_no_principal_it_inherited() -> None:
    """What the request's task inherits of its log context (an earlier request's id and
    principal) is gone: its lines name its own id, and a principal only once one is
    authenticated (`observability.REQUEST_CONTEXT`)."""
    app = Litestar([context])
    observed = RequestObserver(app.asgi_handler, Metrics(lambda: 0.0), ["/context"])
    rid = "0123456789abcdef0123456789abcdef"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/context", "raw_path": b"/context",
             "query_string": b"", "root_path": "", "state": {},
             "headers": [(b"x-request-id", rid.encode())], "litestar_app": app,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}  # fmt: skip
    bodies: list[bytes] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])  # type: ignore[arg-type]

    async def request() -> None:
        structlog.contextvars.bind_contextvars(request_id="earlier", principal="ghost")
        await observed(scope, receive, send)  # type: ignore[arg-type]

    asyncio.run(request())
    assert msgspec.json.decode(b"".join(bodies)) == {"request_id": rid}
