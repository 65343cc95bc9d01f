"""What a request's log line and its metrics carry of what the client sent: the route
and its ids, never a path's text. A client may put personal data anywhere in a path (a
route that does not exist, an e-mail sent as a tag or a department); the canonical line
and the Prometheus labels named it as sent, in plaintext that then lives in every log
store. Personal data is plaintext only in the memory of a request allowed to see it."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from litestar.testing import TestClient
from structlog.testing import capture_logs

from services.api import observability
from tests.integration.api_support import embedded_api

SECRET = "jane.doe@example.com"


@contextmanager
def request_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """The request lines logged meanwhile, whatever logging an earlier test in this
    process configured: `configure_logging` filters by level (a test may have set
    warning) and caches each logger on first use, past what `capture_logs` changes."""
    configured = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs() as logs:
            monkeypatch.setattr(observability, "log", structlog.get_logger("crm.api"))
            yield logs
    finally:
        structlog.configure(wrapper_class=configured)


def test_no_log_line_or_metric_repeats_what_a_client_put_in_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        sales = api.token("sam", "sales", "agent")
        customer = client.post("/v1/customers", json={"name": "Ada"}, headers=sales).json()["id"]
        unknown = uuid.uuid4()
        sent = [
            ("GET", f"/v1/customers/by-email/{SECRET}"),  # no such route
            ("GET", f"/{SECRET}"),
            ("GET", f"/v1/departments/{SECRET}/customers"),  # a route's text parameters
            ("DELETE", f"/v1/customers/{customer}/tags/{SECRET}"),
            ("PATCH", f"/v1/customers/{unknown}/orders/{SECRET}"),
            ("GET", f"/docs/{SECRET}"),
            ("GET", f"/console/{SECRET}"),
            (SECRET.upper().replace("@", "-"), "/v1/ping"),  # a method is a client's token
        ]
        with request_lines(monkeypatch) as logs:
            for method, path in sent:
                assert client.request(method, path, headers=sales).status_code >= 400, path
            client.get(f"/v1/customers/{customer}", headers=sales)
        metrics = client.get("/metrics").text
    lines = [line for line in logs if line["event"] == "request"]
    assert len(lines) == len(sent) + 1
    for line in lines:
        assert "jane" not in json.dumps(line, default=str).lower(), line
    assert "jane" not in metrics.lower()
    named = {(line["method"], line["path"]) for line in lines}
    assert ("GET", "/v1/customers/*/*") in named  # a path no route matches: its route words
    assert ("DELETE", f"/v1/customers/{customer}/tags/{{tag_name}}") in named  # ids as parsed
    assert ("PATCH", f"/v1/customers/{unknown}/orders/{{order_id}}") in named
    assert ("OTHER", "/v1/ping") in named
    assert ("GET", f"/v1/customers/{customer}") in named  # a route of ids: as called
