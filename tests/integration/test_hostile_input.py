"""The most hostile bodies a client can send get a clear 4xx problem naming what is wrong,
and store nothing (issue 14: each of these was a 500 or was accepted)."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from litestar.testing import TestClient

from domain import fields as bound
from domain.task import Task
from tests.integration.api_support import EmbeddedApi, embedded_api, send_raw, served

Client = TestClient[Any]


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def test_deeply_nested_json_is_a_400_and_without_a_token_never_read(
    client: Client, api: EmbeddedApi
) -> None:
    auth = api.token("sam", "sales", "agent")
    for body in ("[" * 1000 + "]" * 1000, '{"name":' + "[" * 1000 + "]" * 1000 + "}"):
        for token, status in ((auth, 400), ({}, 401)):
            sent = client.post(
                "/v1/customers", content=body, headers=token | {"content-type": "application/json"}
            )
            assert sent.status_code == status, sent.text
            if status == 400:
                assert "nested" in problem(sent, 400)["detail"]


NOT_UTF_8 = (
    b"\xed\xa0\x80",  # a surrogate encoded as UTF-8 (CESU-8): no character
    b"\xff",  # a byte UTF-8 never holds
    b"\xc0\xaf",  # an overlong '/'
    b"\xe2\x82",  # a sequence cut short
    b"\xf4\x90\x80\x80",  # past U+10FFFF
)


def test_a_body_that_is_not_utf_8_is_a_400_and_stores_nothing(
    client: Client, api: EmbeddedApi
) -> None:
    """JSON is UTF-8 (RFC 8259): such a body was a 500 (the decoder's UnicodeDecodeError
    escaped), where an escaped lone surrogate (`"\\ud800"`) was already a 400."""
    auth = api.token("sam", "sales", "agent") | {"content-type": "application/json"}
    for raw in NOT_UTF_8:
        for body in (b'{"name": "Ada' + raw + b'"}', b'{"name": "Ada", "x' + raw + b'": 1}'):
            sent = client.post("/v1/customers", content=body, headers=auth)
            assert "UTF-8" in problem(sent, 400)["detail"], body
    for escaped in (rb'"\ud800"', rb'"\udc00x"', rb'"a\ud800\ud800"'):
        sent = client.post("/v1/customers", content=b'{"name": ' + escaped + b"}", headers=auth)
        problem(sent, 400)
    assert api.runtime.app.head_position() == 0


def test_a_body_that_is_not_declared_json_is_a_415(client: Client, api: EmbeddedApi) -> None:
    auth = api.token("sam", "sales", "agent")
    sent = client.post(
        "/v1/customers",
        content=json.dumps({"name": "Ada"}),
        headers=auth | {"content-type": "text/plain"},
    )
    assert problem(sent, 415)["type"].endswith("/unsupported-media-type")
    assert api.runtime.app.head_position() == 0


@pytest.mark.parametrize(
    "charset", ["latin-1", "utf-16", "ISO-8859-1", '"utf-16"', "", "utf-8; charset=latin-1"]
)
def test_a_body_declared_in_another_charset_than_utf_8_is_a_415(
    client: Client, api: EmbeddedApi, charset: str
) -> None:
    """JSON is UTF-8 (RFC 8259): a body declaring Latin-1 or UTF-16 was read as UTF-8
    and its command run, whatever its sender meant its bytes to say."""
    auth = api.token("sam", "sales", "agent")
    declared = auth | {"content-type": f"application/json; charset={charset}"}
    sent = client.post("/v1/customers", content=b'{"name": "Ada"}', headers=declared)
    assert "UTF-8" in problem(sent, 415)["detail"]
    assert problem(sent, 415)["type"].endswith("/unsupported-media-type")
    assert api.runtime.app.head_position() == 0
    for utf_8 in ("utf-8", "UTF-8", '"utf-8"', "utf8"):
        declared = auth | {"content-type": f"application/json;charset={utf_8}"}
        sent = client.post("/v1/customers", content=b'{"name": "Ada"}', headers=declared)
        assert sent.status_code == 201, sent.text


def test_two_content_type_headers_are_a_400_on_a_real_server(api: EmbeddedApi) -> None:
    """The first line was used: a body declared `application/json` and `text/plain` ran
    its command (201). Which one the sender meant is unknown: a 400, in either order."""
    [auth] = api.token("sam", "sales", "agent").items()
    declared = ("application/json", "text/plain")
    with served(api.app) as base:
        for pair in (declared, declared[::-1], declared[:1] * 2):
            headers = [auth, *(("Content-Type", media) for media in pair)]
            sent = send_raw(base, "POST", "/v1/customers", headers, b'{"name": "Ada"}')
            assert sent.status == 400, (pair, sent)
            assert sent.content_type.startswith("application/problem+json")
            assert b"one Content-Type header" in sent.body, sent.body
    assert api.runtime.app.head_position() == 0


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", bytes), ("gzip", gzip.compress), ("GZip, identity", bytes), ("br", bytes)],
)
def test_a_body_with_a_content_encoding_is_a_415_not_read_as_plain(
    client: Client, api: EmbeddedApi, coding: str, compress: Callable[[bytes], bytes]
) -> None:
    """The API reads bodies as sent: one labelled compressed was read as plain JSON
    (and a really compressed one was a 400 saying the JSON was malformed): a 415 that
    names the one coding it takes (RFC 9110)."""
    auth = api.token("sam", "sales", "agent")
    plain = json.dumps({"name": "Ada"}).encode()
    headers = auth | {"content-type": "application/json", "content-encoding": coding}
    sent = client.post("/v1/customers", content=compress(plain), headers=headers)
    assert problem(sent, 415)["type"].endswith("/unsupported-content-coding")
    assert sent.headers["accept-encoding"] == "identity"
    assert api.runtime.app.head_position() == 0
    identity = headers | {"content-encoding": "identity"}
    assert client.post("/v1/customers", content=plain, headers=identity).status_code == 201


def test_oversized_lists_and_bodies_are_refused(client: Client, api: EmbeddedApi) -> None:
    auth = api.token("sam", "sales", "agent")
    huge = {"name": "Ada", "tags": [f"t{i}" for i in range(500_000)]}
    assert client.post("/v1/customers", json=huge, headers=auth).status_code == 413
    many = {"name": "Ada", "tags": [f"t{i}" for i in range(51)]}
    assert problem(client.post("/v1/customers", json=many, headers=auth), 400)["field"] == "tags"
    assert api.runtime.app.head_position() == 0


def test_control_characters_are_refused_in_text(client: Client, api: EmbeddedApi) -> None:
    """C0 and C1 controls alike: U+009B is the one-character CSI and U+009D the OSC of a
    terminal (they were accepted, and `crm audit history` prints events as stored)."""
    auth = api.token("sam", "sales", "agent")
    for name in ("Ada\x00Lovelace", "Ada \x1b[31mred", "Ada \x9b31mred", "Ada\x85Lovelace"):
        refused = client.post("/v1/customers", json={"name": name}, headers=auth)
        assert problem(refused, 400)["field"] == "name"
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()["id"]
    opened = {"customer_id": customer, "channel": "chat", "subject": "s"}
    conversation = client.post("/v1/conversations", json=opened, headers=auth).json()["id"]
    message = {"direction": "inbound", "author": "ada", "content": "line one\nline\ttwo"}
    url = f"/v1/conversations/{conversation}/messages"
    assert client.post(url, json=message, headers=auth).status_code == 201
    for content in ("\x1b]0;pwned\x07", "\x9d0;pwned\x9c", "a\x80b"):
        escaped = message | {"content": content}
        assert problem(client.post(url, json=escaped, headers=auth), 400)["field"] == "content"
    assert api.runtime.app.head_position() == 3


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
        no_store = path in ("/v1/ping", "/v1/departments")  # nothing looked up: no 404
        required = {"401", "403"} if no_store else {"401", "403", "404"}
        assert required <= set(errors), (method, path)
        for code, spec in errors.items():
            assert list(spec["content"]) == ["application/problem+json"], (method, path, code)
            assert "problems/" in spec["description"], (method, path, code)


def test_read_model_reads_declare_their_429(client: Client) -> None:
    """A principal's list, search, timeline or statistics query waiting too long behind
    its own answers 429 `too-many-queries` (`services.api.query_turns`)."""
    paths = client.get("/openapi.json").json()["paths"]
    turned = [
        "/v1/departments/{department}/{view}",
        "/v1/customers",
        "/v1/customers/{customer_id}/timeline",
        "/v1/stats/satisfaction",
        "/v1/stats/tasks",
    ]
    assert {path: "429" in paths[path]["get"]["responses"] for path in turned} == dict.fromkeys(
        turned, True
    )


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


def test_a_range_ending_before_its_start_is_a_400_naming_both(
    client: Client, api: EmbeddedApi
) -> None:
    """`from` after `to` found nothing and answered 200 with zero statistics or an empty
    page of the access log: on every route the OpenAPI document gives a range. Bounds
    compare as instants, whatever their zones; a range of one instant stays a range."""
    admin = api.token("ann", "sales", "admin")
    paths = client.get("/openapi.json").json()["paths"]
    ranged = sorted(
        path
        for path, item in paths.items()
        if {"from", "to"} <= {given["name"] for given in item.get("get", {}).get("parameters", [])}
    )
    assert ranged == ["/v1/audit/access", "/v1/stats/satisfaction"]
    later, earlier = "2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+02:00"
    for path in ranged:
        sent = client.get(path, params={"from": later, "to": earlier}, headers=admin)
        assert problem(sent, 400)["detail"] == f"to {earlier} is before from {later}"
        for start, end in ((earlier, later), (later, later)):
            sent = client.get(path, params={"from": start, "to": end}, headers=admin)
            assert sent.status_code == 200, sent.text


HOSTILE_VALUES = (
    *("", "%20", "%00", "a%00b", "%FF", "%ED%A0%80", "x" * 5000, "'", "%25", "*", "%2F", ".."),
    *("-1", "0", "9223372036854775808", "1" * 30, "1e309", "NaN"),
    *("0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00", "2024-02-30", "infinity"),
    "00000000-0000-0000-0000-000000000000",
)
"""What a hostile caller puts in a parameter: empty, NUL, invalid UTF-8, huge, SQL and
LIKE metacharacters, integers past 64 bits, times past the calendar's edges."""


HOSTILE_HEADERS = ("", "x" * 5000, "-1", "9223372036854775808", "1" * 30, "NaN", "'", "*", '"')
"""The same for a header (HTTP carries no NUL or raw non-Latin-1 there)."""

Hostile = tuple[str, str, dict[str, str]]  # method, URL template, headers


def hostile_requests(paths: dict[str, Any]) -> list[Hostile]:
    """Every parameter (path, query, header) of every route in the OpenAPI `paths` set to
    each hostile value, the others valid, department views each; reads first, so that the
    writes some values let through change nothing read. Templates name the ids
    (`{customer_id}`...) so each store fills in its own."""
    requests: list[Hostile] = []
    for path, item in paths.items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete") or "stream" in path:
                continue
            parameters = [(p["in"], p["name"]) for p in operation.get("parameters", [])]
            views = ("customers", "conversations", "tasks") if "{view}" in path else ("",)
            for base in (path.replace("{view}", view) for view in views):
                for where, name in parameters:
                    if where == "path" and name != "view":
                        values = [v for v in HOSTILE_VALUES if v]
                        requests += [(method, base.replace(f"{{{name}}}", v), {}) for v in values]
                    elif where == "query":
                        values = [*HOSTILE_VALUES, f"1&{name}=2"]  # and given twice
                        requests += [(method, f"{base}?{name}={v}", {}) for v in values]
                    elif where == "header":
                        requests += [(method, base, {name: v}) for v in HOSTILE_HEADERS]
    return sorted(requests, key=lambda request: request[0] != "get")


Answers = dict[tuple[str, str, str, str], int]  # (role, method, URL template, headers): status


def answers_to_hostile_parameters(database_url: str | None, tmp_path: Path) -> Answers:
    """Status of every hostile request, for an admin and for another department's agent,
    on a store holding a customer with an order, a rated conversation and a task."""
    with embedded_api(tmp_path, database_url=database_url) as api, TestClient(api.app) as client:
        roles = {"admin": api.token("ann", "sales", "admin")}
        roles["agent"] = api.token("sue", "support", "agent")
        admin = roles["admin"]

        def created(url: str, body: dict[str, Any]) -> str:
            sent = client.post(url, json=body, headers=admin)
            assert sent.status_code in (200, 201), (url, sent.text)
            return str(sent.json()["id"])

        customer = created("/v1/customers", {"name": "Ada", "email": "a@x.io", "tags": ["vip"]})
        order = {"order_id": "o-1", "amount": "10.00", "currency": "EUR"}
        created(f"/v1/customers/{customer}/orders", order)
        opened = {"customer_id": customer, "channel": "chat", "subject": "s"}
        conversation = created("/v1/conversations", opened)
        created(f"/v1/conversations/{conversation}/close", {"outcome": "resolved"})
        created(f"/v1/conversations/{conversation}/csat", {"score": 5})
        task = created("/v1/tasks", {"customer_id": customer, "title": "call back"})
        ids = {"customer_id": customer, "conversation_id": conversation, "task_id": task}
        ids |= {"department": "sales", "tag_name": "vip", "order_id": "o-1", "message_id": "m-1"}
        api.catch_up()
        paths = client.get("/openapi.json").json()["paths"]
        answers: Answers = {}
        for method, template, extra in hostile_requests(paths):
            url = template.format(**ids) if "{" in template else template
            for role, headers in roles.items():
                sent = client.request(method.upper(), url, headers=headers | extra, json={})
                assert sent.status_code < 500, (role, method, url[:120], extra, sent.text)
                if sent.status_code >= 400:
                    problem(sent, sent.status_code)
                answers[role, method, template, str(extra)] = sent.status_code
        return answers


def test_hostile_parameters_are_4xx_and_answered_alike_on_both_stores(
    pg_url: str, tmp_path: Path
) -> None:
    """Every route's parameters, from the OpenAPI document, so a new route or parameter
    is covered by being declared. A value one store refuses and the other accepts (as a
    NUL was: a 500 on PostgreSQL, nothing found on SQLite) shows as a difference."""
    on_sqlite = answers_to_hostile_parameters(None, tmp_path / "sqlite")
    on_postgres = answers_to_hostile_parameters(pg_url, tmp_path / "postgres")
    assert len(on_sqlite) > 5000
    assert {200, 400, 403, 404, 422} <= set(on_sqlite.values())
    differences = [
        (role, method, url[:80], extra[:80], status, on_postgres.get((role, method, url, extra)))
        for (role, method, url, extra), status in on_sqlite.items()
        if on_postgres.get((role, method, url, extra)) != status
    ]
    assert not differences


LATIN_1_HEADERS = ("\xb9", '"\xb2"', 'W/"\xb3"', "1\xbd", "\xaa", "\xff")
"""Header values HTTP does carry: Latin-1 bytes (superscript digits, a fraction, an
ordinal, y-umlaut). The in-process client re-encodes them as UTF-8, so these go to a
real server."""


def test_latin_1_header_values_are_4xx_on_a_real_server(api: EmbeddedApi) -> None:
    """Every header parameter the OpenAPI document declares, given Latin-1 characters
    that Python calls digits but `int` refuses (an If-Match of `"\xb2"` was a 500)."""
    admin = api.token("ann", "sales", "admin")
    with served(api.app) as base:
        port = int(base.rpartition(":")[2])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/v1/customers", json.dumps({"name": "Ada"}), _json(admin))
        customer = json.loads(connection.getresponse().read())["id"]
        connection.request("GET", "/openapi.json")
        paths = json.loads(connection.getresponse().read())["paths"]
        for method, path, name in _header_parameters(paths):
            url = path.replace("{customer_id}", customer)
            for value in LATIN_1_HEADERS:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request(method, url, "{}", _json(admin) | {name: value})
                status = connection.getresponse().status
                connection.close()
                assert status < 500, (method, url, name, value)


def _header_parameters(paths: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, path, header) of every header parameter of a customer's or the stream's
    routes (the others take the same dependencies)."""
    return [
        (method.upper(), path, parameter["name"])
        for path, item in paths.items()
        if path.startswith("/v1/customers/{customer_id}") or path == "/v1/events/stream"
        for method, operation in item.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "header"
    ]


def _json(headers: dict[str, str]) -> dict[str, str]:
    return headers | {"Content-Type": "application/json"}


def test_a_full_conversation_is_a_409_and_stores_nothing(
    client: Client, api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of a conversation carries all its messages: its size is bounded, or a
    writer could make each read cost gigabytes."""
    monkeypatch.setattr(bound, "CONVERSATION_TEXT", 3 * 65_536)
    auth = api.token("sam", "sales", "agent")
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()["id"]
    opened = {"customer_id": customer, "channel": "chat", "subject": "s"}
    conversation = client.post("/v1/conversations", json=opened, headers=auth).json()["id"]
    url = f"/v1/conversations/{conversation}/messages"
    message = {"direction": "inbound", "author": "Ada", "content": "x" * 65_536}
    for _ in range(3):
        assert client.post(url, json=message, headers=auth).status_code == 201
    full = _refused_as_full(api, lambda: client.post(url, json=message, headers=auth))
    assert "new conversation" in full


def test_a_full_customer_is_a_409_and_stores_nothing(
    client: Client, api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of a customer carries its tags, consents and orders: one at a time,
    a client could otherwise add them without end."""
    monkeypatch.setattr(bound, "MAX_ORDERS", 2)
    auth = api.token("sam", "sales", "agent")
    tags = [f"t{n}" for n in range(bound.MAX_TAGS)]
    consents = {f"c{n}": True for n in range(bound.MAX_CONSENTS)}
    registered = {"name": "Ada", "tags": tags, "consents": consents}
    customer = client.post("/v1/customers", json=registered, headers=auth).json()["id"]
    url = f"/v1/customers/{customer}"
    for n in range(2):
        order = {"order_id": f"o-{n}", "amount": "1", "currency": "EUR"}
        assert client.post(f"{url}/orders", json=order, headers=auth).status_code == 200
    new_order = {"order_id": "o-2", "amount": "1", "currency": "EUR"}
    new_consent = {"consents": {"one_more": True}}
    one_more: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", f"{url}/tags", {"tag": "one-more"}, f"{bound.MAX_TAGS} tags"),
        ("PUT", f"{url}/consents", new_consent, f"{bound.MAX_CONSENTS} consents"),
        ("POST", f"{url}/orders", new_order, "2 orders"),
    ]
    for method, path, body, held in one_more:
        full = _refused_as_full(api, partial(client.request, method, path, json=body, headers=auth))
        assert f"holds {held}, the most one may" in full
    assert len(client.get(url, headers=auth).json()["tags"]) == bound.MAX_TAGS


def test_a_task_at_its_event_bound_is_a_409_and_stores_nothing(
    client: Client, api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read of a task replays its events: progress notes logged in a loop would
    otherwise make every read of it cost seconds."""
    monkeypatch.setattr(Task, "max_events", 4)
    auth = api.token("sam", "sales", "agent")
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()["id"]
    created = {"customer_id": customer, "title": "Call", "assignee": "sam"}
    task = client.post("/v1/tasks", json=created, headers=auth).json()["id"]
    assert client.post(f"/v1/tasks/{task}/start", headers=auth).status_code == 200
    url = f"/v1/tasks/{task}/progress"
    for percent in (10, 20):
        progress = {"note": "n", "percent": percent}
        assert client.post(url, json=progress, headers=auth).status_code == 200
    more = {"note": "n", "percent": 30}
    detail = _refused_as_full(api, lambda: client.post(url, json=more, headers=auth))
    assert "holds 4 events" in detail
    assert "new task" in detail


def _refused_as_full(api: EmbeddedApi, send: Callable[[], Any]) -> str:
    """The detail of what `send` answers: a 409 `invalid-transition`, with nothing
    stored (the store's head where it was)."""
    head = api.runtime.app.head_position()
    full = problem(send(), 409)
    assert full["type"].endswith("/invalid-transition")
    assert api.runtime.app.head_position() == head
    return str(full["detail"])
