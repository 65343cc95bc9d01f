"""The most hostile bodies a client can send get a clear 4xx problem naming what is wrong,
and store nothing (issue 14: each of these was a 500 or was accepted)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from litestar.testing import TestClient

from tests.integration.api_support import EmbeddedApi, embedded_api

Client = TestClient[Any]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[EmbeddedApi]:
    with embedded_api(tmp_path) as embedded:
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[Client]:
    with TestClient(app=api.app) as test_client:
        yield test_client


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def test_deeply_nested_json_is_a_400_even_without_a_token(client: Client) -> None:
    for body in ("[" * 1000 + "]" * 1000, '{"name":' + "[" * 1000 + "]" * 1000 + "}"):
        sent = client.post(
            "/v1/customers", content=body, headers={"content-type": "application/json"}
        )
        assert "nested" in problem(sent, 400)["detail"]


def test_a_body_that_is_not_declared_json_is_a_415(client: Client, api: EmbeddedApi) -> None:
    auth = api.token("sam", "sales", "agent")
    sent = client.post(
        "/v1/customers",
        content=json.dumps({"name": "Ada"}),
        headers=auth | {"content-type": "text/plain"},
    )
    assert problem(sent, 415)["type"].endswith("/unsupported-media-type")
    assert api.runtime.app.head_position() == 0


def test_oversized_lists_and_bodies_are_refused(client: Client, api: EmbeddedApi) -> None:
    auth = api.token("sam", "sales", "agent")
    huge = {"name": "Ada", "tags": [f"t{i}" for i in range(500_000)]}
    assert client.post("/v1/customers", json=huge, headers=auth).status_code == 413
    many = {"name": "Ada", "tags": [f"t{i}" for i in range(51)]}
    assert problem(client.post("/v1/customers", json=many, headers=auth), 400)["field"] == "tags"
    assert api.runtime.app.head_position() == 0


def test_control_characters_are_refused_in_text(client: Client, api: EmbeddedApi) -> None:
    auth = api.token("sam", "sales", "agent")
    for name in ("Ada\x00Lovelace", "Ada \x1b[31mred"):
        refused = client.post("/v1/customers", json={"name": name}, headers=auth)
        assert problem(refused, 400)["field"] == "name"
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()["id"]
    opened = {"customer_id": customer, "channel": "chat", "subject": "s"}
    conversation = client.post("/v1/conversations", json=opened, headers=auth).json()["id"]
    message = {"direction": "inbound", "author": "ada", "content": "line one\nline\ttwo"}
    url = f"/v1/conversations/{conversation}/messages"
    assert client.post(url, json=message, headers=auth).status_code == 201
    escaped = message | {"content": "\x1b]0;pwned\x07"}
    assert problem(client.post(url, json=escaped, headers=auth), 400)["field"] == "content"


def test_limits_show_in_the_openapi_document(client: Client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    name = schemas["RegisterCustomer"]["properties"]["name"]
    assert (name["maxLength"], "pattern" in name) == (200, True)
    assert schemas["RegisterCustomer"]["properties"]["tags"]["maxItems"] == 50
    assert schemas["LogMessage"]["properties"]["content"]["maxLength"] == 65_536


def test_every_route_declares_its_error_responses_as_problems(client: Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operations = [
        (path, method, operation)
        for path, item in paths.items()
        if path.startswith("/v1/") and "/healthz" not in path
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
        and path.rsplit("/", 1)[-1] not in ("readyz", "metrics", "openapi.json")
    ]
    assert len(operations) > 35
    for path, method, operation in operations:
        errors = {code: spec for code, spec in operation["responses"].items() if code >= "400"}
        required = {"401", "403"} if path == "/v1/ping" else {"401", "403", "404"}  # ping: no store
        assert required <= set(errors), (method, path)
        for code, spec in errors.items():
            assert list(spec["content"]) == ["application/problem+json"], (method, path, code)
            assert "problems/" in spec["description"], (method, path, code)


NUL_QUERIES = (
    "/v1/departments/sales/customers?tag=a%00b",
    "/v1/departments/sales/tasks?assignee=a%00b",
    "/v1/customers?company=a%00b",
    "/v1/stats/satisfaction?department=sales&agent=a%00b",
    "/v1/stats/tasks?department=sales&agent=a%00b",
)
"""Filters a route passes to SQL as text: PostgreSQL text cannot hold a NUL."""


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_nul_in_a_query_or_a_cursor_is_a_400_on_both_stores(
    store: str, pg_url: str, tmp_path: Path
) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps(["a\x00b", "open", None, str(uuid4())]).encode())
    with (
        embedded_api(tmp_path, database_url=pg_url if store == "postgres" else None) as api,
        TestClient(app=api.app) as client,
    ):
        headers = api.token("mia", "sales", "manager")
        for url in (*NUL_QUERIES, f"/v1/departments/sales/tasks?cursor={cursor.decode()}"):
            detail = problem(client.get(url, headers=headers), 400)["detail"]
            assert "NUL" in detail or "cursor" in detail, (url, detail)
        escaped = "/v1/departments/sales/tasks?assignee=a%2500b"  # a literal "%00", not a NUL
        assert client.get(escaped, headers=headers).is_success
