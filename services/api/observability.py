"""Prometheus metrics and the one canonical log line per request.

`RequestObserver` wraps the whole ASGI app (outside routing and error handling) so
every response is counted and logged once, including 401s and unknown paths: method,
path, route, status, duration_ms, principal. Each app has its own registry, so tests
can build many apps; the lead can register relay/projection collectors on it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = structlog.get_logger("crm.api")


def new_request_id() -> str:
    """128 random bits as hex, for tracing only (not a secret). Not `uuid4()`: its
    `os.urandom` syscall releases the GIL, and under load the event loop then waits
    up to a switch interval (5 ms) to get it back, on every request."""
    return f"{random.getrandbits(128):032x}"


class Metrics:
    def __init__(self, head_position: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
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

    def gauge(self, name: str, text: str, value: Callable[[], float]) -> None:
        """A gauge read from `value` at each scrape."""
        Gauge(name, text, registry=self.registry).set_function(value)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=new_request_id()[:16])
        started = time.perf_counter()
        status = [500]

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self._record(scope, status[0], time.perf_counter() - started)

    def _record(self, scope: Any, status: int, seconds: float) -> None:
        route = scope.get("path_template") or "unmatched"
        method = scope["method"]
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(seconds)
        state = scope.get("state") or {}
        log.info(
            "request",
            method=method,
            path=scope["path"],
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            principal=state.get("principal"),
        )
