"""A query parameter a route does not take, or one it takes once sent twice, is a 400
naming it, on every route of the OpenAPI document and on both stores: either was
answered as if it had not been sent (`/v1/stats/tasks?from=&to=` gave all-time
figures), or one of the two values was used without a word."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.integration.api_support import EmbeddedApi

Client = TestClient[Any]
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def api(api_on_each_store: EmbeddedApi) -> EmbeddedApi:
    return api_on_each_store


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[Client]:
    with TestClient(app=api.app) as test_client:
        yield test_client


def operations(client: Client) -> list[tuple[str, str, list[str]]]:
    """(method, path with its parameters filled in, query parameter names) of every
    operation of the OpenAPI document: a new route is covered by being declared. Each
    declares the 400 it may now answer."""
    paths: dict[str, Any] = client.get("/openapi.json").json()["paths"]
    found = [
        (method, _filled(path), _query(operation))
        for path, item in paths.items()
        for method, operation in item.items()
        if method in METHODS and "400" in operation["responses"]
    ]
    assert len(found) == sum(method in METHODS for item in paths.values() for method in item)
    assert len(found) > 40
    return found


def _query(operation: dict[str, Any]) -> list[str]:
    return sorted(p["name"] for p in operation.get("parameters", []) if p["in"] == "query")


def _filled(path: str) -> str:
    """`path` with each `{name}` a well-formed id (the query is refused before any is read)."""
    parts = path.split("/")
    return "/".join("00000000-0000-4000-8000-000000000001" if p[:1] == "{" else p for p in parts)


def problem(response: Any) -> str:
    assert response.status_code == 400, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    detail: str = response.json()["detail"]
    return detail


def test_a_parameter_a_route_does_not_take_is_a_400_listing_those_it_takes(
    client: Client, api: EmbeddedApi
) -> None:
    """Which names a route takes agrees with the OpenAPI document, both ways: any other is
    refused, naming what the document lists, and none it lists is (sent without a token,
    so no route runs: each answers 401)."""
    admin = api.token("ann", "sales", "admin")
    ranged = client.get(
        "/v1/stats/tasks?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z", headers=admin
    )  # answered all-time figures, as if the range applied
    assert problem(ranged) == (
        "query parameter 'from' is not one this route takes "
        "(it takes agent, department, min_position)"
    )
    assert ranged.json()["field"] == "from"
    assert "'Email'" in problem(client.get("/v1/customers?Email=a@x.io", headers=admin))
    times = {(path, name) for _, path, name in time_parameters(client)}
    for method, path, names in operations(client):
        sent = client.request(method, f"{path}?min_positon=3", headers=admin, json={})
        takes = ", ".join(names) or "none"
        expected = f"query parameter 'min_positon' is not one this route takes (it takes {takes})"
        assert problem(sent) == expected, (method, path)
        for name in names:
            value = A_TIME if (path, name) in times else "1"
            taken = client.request(method, path, params={name: value}, json={})
            assert taken.status_code == 401, (method, path, name, taken.text)


def test_a_parameter_sent_twice_is_a_400_naming_it(client: Client, api: EmbeddedApi) -> None:
    """Each value alone is served; together the last was used without a word
    (`limit=1000&limit=10` answered 10 rows, `min_position=99&min_position=1` waited
    for 1), whatever the first said."""
    admin = api.token("ann", "sales", "admin")
    once = client.get("/v1/departments/sales/customers?limit=10", headers=admin)
    assert once.status_code == 200, once.text
    twice = client.get("/v1/departments/sales/customers?limit=10&limit=10", headers=admin)
    assert problem(twice) == "query parameter 'limit' is sent 2 times: send it once"
    assert twice.json()["field"] == "limit"
    repeated = 0
    for method, path, names in operations(client):
        for name in names:
            sent = client.request(method, f"{path}?{name}=1&{name}=2", headers=admin, json={})
            expected = f"query parameter {name!r} is sent 2 times: send it once"
            assert problem(sent) == expected, (method, path)
            repeated += 1
    assert repeated > 30


def integer_parameters(client: Client) -> list[tuple[str, str, str]]:
    """(method, filled path, name) of every integer query parameter the document lists."""
    return typed_parameters(client, {"type": "integer"})


def time_parameters(client: Client) -> list[tuple[str, str, str]]:
    """(method, filled path, name) of every time query parameter the document lists."""
    return typed_parameters(client, {"type": "string", "format": "date-time"})


def typed_parameters(client: Client, schema: dict[str, str]) -> list[tuple[str, str, str]]:
    """(method, filled path, name) of every query parameter of type `schema` (or null)."""
    paths: dict[str, Any] = client.get("/openapi.json").json()["paths"]
    return [
        (method, _filled(path), parameter["name"])
        for path, item in paths.items()
        for method, operation in item.items()
        if method in METHODS
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and _is_of(parameter["schema"], schema)
    ]


def _is_of(schema: dict[str, Any], kind: dict[str, str]) -> bool:
    options = [o for o in schema.get("oneOf", [schema]) if o.get("type") != "null"]
    return bool(options) and all(kind.items() <= option.items() for option in options)


A_TIME = "2026-01-31T00:00:00+01:00"


@pytest.mark.parametrize("value", ["1e0", "-0", "1.0", "10e-1", "01", "+1", "\u0661", "1_0"])
def test_an_integer_parameter_not_written_in_ascii_digits_is_a_400_naming_it(
    client: Client, api: EmbeddedApi, value: str
) -> None:
    """The framework read a query integer as a JSON number: `?min_position=1e0` waited
    for position 1, `?cursor=-0` paged a history from its start and `?limit=10e-1` gave
    one row. Each is refused as malformed, on every route, before anything is read."""
    admin = api.token("ann", "sales", "admin")
    checked = 0
    for method, path, name in integer_parameters(client):
        sent = client.request(method, path, params={name: value}, headers=admin)
        assert sent.json()["field"] == name, (method, path, sent.text)
        assert problem(sent) == (
            f"query parameter {name!r} must be a whole number in ASCII digits "
            f"(no sign, leading zero, space, exponent or underscore), not {value!r}"
        )
        checked += 1
    assert checked > 15


@pytest.mark.parametrize(
    "value", ["1e9", "-0", "0", "1700000000.5", "4e9", "2026-01-31", "2026-01-31T00:00:00"]
)
def test_a_time_parameter_not_written_in_rfc_3339_with_a_zone_is_a_400_naming_it(
    client: Client, api: EmbeddedApi, value: str
) -> None:
    """The framework read a query time written as a number as a Unix timestamp:
    `?from=1e9` counted from 2001-09-09, `?to=-0` ended at 1970-01-01 and `?as_of=4e9`
    answered a customer's state "as of" 2096 (200). Each is refused as malformed, on
    every route, before anything is read; a time with a zone is taken."""
    admin = api.token("ann", "sales", "admin")
    checked = 0
    for method, path, name in time_parameters(client):
        sent = client.request(method, path, params={name: value}, headers=admin)
        assert sent.json()["field"] == name, (method, path, sent.text)
        assert problem(sent).startswith(f"query parameter {name!r} must "), sent.text
        assert value in problem(sent) or "time zone" in problem(sent), sent.text
        checked += 1
    assert checked >= 5
