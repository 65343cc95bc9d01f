"""Prometheus metrics and the one canonical log line per request.

`RequestObserver` wraps the whole ASGI app (outside routing and error handling) so
every response is counted and logged once, including 401s and unknown paths: method,
path, route, status, duration_ms, principal. Each app has its own registry, so tests
can build many apps; the lead can register relay/projection collectors on it.

What a client sends reaches neither the log nor a label as it was sent (`LoggedPath`):
a path may hold anything, personal data too (`/v1/customers/by-email/jane@example.com`,
an e-mail sent as a tag to untag), and personal data is plaintext only in the memory of
a request allowed to see it. A line names its route's template with the ids it was
called with (UUIDs and integers, as parsed) and its text parameters by name; a path
no route matched, by the route words it holds, each other segment a `*`. A method is
one of HTTP's or `OTHER`: labels take a bounded set of values, or every new one a
client sends would be a new time series kept for the life of the process.

Each request has one id (`chosen_request_id`): the client's X-Request-Id if it is an
opaque id, else a new one. Every log line of the request names it (`request_id`), the
events its command stores carry it (`correlation_id`, `services.api.deps.authenticate`)
and the answer returns it in X-Request-Id, whatever its status.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from domain import validation
from domain.base import ValidationFailed
from services.api.response_headers import with_api_headers

log = structlog.get_logger("crm.api")


def new_request_id() -> str:
    """128 random bits as hex, for tracing only (not a secret). Not `uuid4()`: its
    `os.urandom` syscall releases the GIL, and under load the event loop then waits
    up to a switch interval (5 ms) to get it back, on every request."""
    return f"{random.getrandbits(128):032x}"


REQUEST_ID = "request_id"
"""Where a request's id is kept in its scope's state (`chosen_request_id`)."""
_REQUEST_ID_HEADER = b"x-request-id"


def chosen_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """A request's id: the client's X-Request-Id when it sent one line holding an opaque
    id (`domain.validation.request_id`), else a new one. Never a refusal: a client that
    sends an e-mail, a name or control characters there gets an id of ours instead, and
    reads it in the answer's X-Request-Id. The id names the request's log lines and is
    the `correlation_id` of the events it stores, for good, where no erasure reaches."""
    sent = [value for name, value in headers if name.lower() == _REQUEST_ID_HEADER]
    if len(sent) == 1:
        with suppress(ValidationFailed):
            return validation.request_id(sent[0].decode("latin-1"))
    return new_request_id()


REQUEST_CONTEXT = ("request_id", "principal")
"""The keys the API binds to a request's log lines (`structlog.contextvars`): its id
here, its principal once authenticated (`deps.authenticate`). Nothing else binds any."""


def fresh_request_context(request_id: str) -> None:
    """A request's log context: its id, and no principal (an earlier request's, had the
    request's task inherited one, is gone). `clear_contextvars` did this by copying the
    whole context and walking every variable in it, of every library: ~9,000
    instructions a request, where unbinding the API's own keys is a lookup each."""
    structlog.contextvars.unbind_contextvars(*REQUEST_CONTEXT)
    structlog.contextvars.bind_contextvars(request_id=request_id)


def request_id_of(scope: Any) -> str:
    """The id `RequestObserver` chose for the request of `scope` (a new one if none did)."""
    chosen = (scope.get("state") or {}).get(REQUEST_ID)
    return chosen if isinstance(chosen, str) else new_request_id()


EXPOSITION_SECONDS = 1.0
"""How long a rendering of `/metrics` is answered again (`Metrics.exposition`)."""


class Metrics:
    def __init__(
        self, head_position: Callable[[], float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._rendered: tuple[float, bytes] | None = None
        self._rendering = threading.Lock()
        self.requests = Counter(
            "crm_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "crm_http_request_seconds",
            "HTTP request duration",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.batch_size = Histogram(
            "crm_group_commit_batch_size",
            "Aggregates saved per event-store transaction",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.batch_seconds = Histogram(
            "crm_group_commit_seconds",
            "Duration of one group-commit transaction",
            registry=self.registry,
        )
        self.gauge(
            "crm_event_store_head_position",
            "Newest global position in the event store",
            head_position,
        )
        self._per_request: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one request. The children of each label set are looked up
        once and kept (`labels()` checks, joins and looks its labels up under a lock, for
        each metric, on every call): as many as the label sets the metrics hold anyway,
        each method, route and status the app answered."""
        key = (method, route, status)
        if (children := self._per_request.get(key)) is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._per_request[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, rendered at most once every
        `EXPOSITION_SECONDS` (concurrent scrapes wait for the one rendering): `/metrics`
        takes no token, and a rendering asks the stores the gauges' questions, ~15 times
        what `/healthz` costs (red team). Scrapers poll every few seconds."""
        with self._rendering:
            now = self._clock()
            if self._rendered is None or now - self._rendered[0] >= EXPOSITION_SECONDS:
                self._rendered = (now, generate_latest(self.registry))
            return self._rendered[1]

    def gauge(self, name: str, text: str, value: Callable[[], float]) -> None:
        """A gauge read from `value` at each scrape."""
        Gauge(name, text, registry=self.registry).set_function(value)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_SEGMENTS = 12
"""The most segments of an unmatched path a line names (a longer one ends in `/…`)."""
_PARAMETER = re.compile(r"\{([^}:]+)(?::([^}]*))?\}")


class LoggedPath:
    """The path a request's line names (see the module), from the app's route paths:
    their words, and how to name each route's path (worked out once): as sent when its
    parameters are all ids (`uuid` or `int`), else its template with those ids filled in."""

    def __init__(self, route_paths: Iterable[str]) -> None:
        paths = set(route_paths)
        self._words = frozenset(
            word for path in paths for word in path.split("/") if word and "{" not in word
        )
        self._named: dict[str, tuple[str, ...] | None] = {  # by template (types dropped)
            _PARAMETER.sub(r"{\1}", path): _naming(path) for path in paths
        }

    def __call__(self, scope: Any) -> str:
        template: str = scope.get("path_template") or ""
        if not template:
            return self._unmatched(scope["path"])
        parts = self._named.get(template, ())
        if parts is None:
            path: str = scope["path"]  # its parameters parsed as ids: nothing else
            return path
        if len(parts) < 2:
            return template  # no id to fill in (or a template of no route: named as is)
        params = scope.get("path_params") or {}
        return "".join(str(params.get(p)) if i % 2 else p for i, p in enumerate(parts))

    def _unmatched(self, path: str) -> str:
        segments = path.split("/")[1:]
        kept = ["" if not s else s if s in self._words else "*" for s in segments]
        more = "/…" if len(kept) > UNMATCHED_SEGMENTS else ""
        return "/" + "/".join(kept[:UNMATCHED_SEGMENTS]) + more


_IDS = ("uuid", "int")


def _naming(path: str) -> tuple[str, ...] | None:
    """None: a route path whose parameters are all ids, named as sent. Else its template
    split into text and the names of its id parameters (odd places), text parameters
    left in the text as `{name}`."""
    parameters = _PARAMETER.findall(path)
    if all(kind in _IDS for _, kind in parameters):
        return None
    split = _PARAMETER.split(path)  # text, (name, kind, text)...
    parts = [split[0]]
    for at in range(1, len(split), 3):
        name, kind, text = split[at : at + 3]
        if kind in _IDS:
            parts += [name, text]
        else:
            parts[-1] += "{" + name + "}" + text
    return tuple(parts)


class RequestObserver:
    """Wraps the whole app: counts, times and logs each request once, and adds its
    X-Request-Id to the answer, after the headers `headers(path)` names that the answer
    does not set itself (`response_headers.api_headers`: one wrapper of `send` does both,
    not one each)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        route_paths: Iterable[str] = (),
        headers: Callable[[str], list[tuple[bytes, bytes]]] = lambda _: [],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.logged_path = LoggedPath(route_paths)
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = chosen_request_id(scope["headers"])
        scope.setdefault("state", {})[REQUEST_ID] = request_id
        fresh_request_context(request_id)
        answered = (_REQUEST_ID_HEADER, request_id.encode("ascii"))
        added = self.headers(scope["path"])
        started = time.perf_counter()
        status = [500]

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = with_api_headers(message.get("headers", ()), added)
                headers.append(answered)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self._record(scope, status[0], time.perf_counter() - started)

    def _record(self, scope: Any, status: int, seconds: float) -> None:
        route = scope.get("path_template") or "unmatched"
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        self.metrics.request(method, route, status, seconds)
        if not log.is_enabled_for(logging.INFO):  # a server run at warning: no line to fill
            return
        state = scope.get("state") or {}
        log.info(
            "request",
            method=method,
            path=self.logged_path(scope),
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            principal=state.get("principal"),
        )
