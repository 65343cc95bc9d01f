"""Whatever the API accepts, every projection applies, on both stores.

Hypothesis sends commands built from the command classes' own fields with extreme but
plausible values (edges of every length, astral-plane text, every time-zone offset,
years 1 to 9999, huge and tiny amounts) through the real API. Each answer must be a
success or a clear 4xx (never a 5xx), and every accepted command must reach every read
model without a dead letter, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from bench.databases import fresh_database
from domain import fields as bound
from projections import PROJECTIONS
from tests.integration.api_support import EmbeddedApi, embedded_api

Headers = dict[str, str]

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offsets,
) | st.sampled_from(
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-23:59",
        "1900-01-01T00:00:00+00:00",
        "1900-01-01T13:59:00+13:59",
        "9999-12-31T23:59:59.999999+00:00",
        "9999-12-31T23:59:59+23:59",
    ]
)
line_chars = st.characters(blacklist_categories=("Cc", "Cs"))
text_chars = line_chars | st.sampled_from("\n\t")


def texts(limit: int, chars: st.SearchStrategy[str] = line_chars) -> st.SearchStrategy[str]:
    astral = "\U0001d518"  # outside the Basic Multilingual Plane
    edges = st.sampled_from(["x" * limit, astral * limit, "x" * (limit + 1)])
    return st.text(chars, min_size=1, max_size=min(limit, 300)) | edges


TAG = r"[a-z0-9][a-z0-9_:.-]{0,49}"
amounts = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e999999", "999999999999.9999", "0.00001", "-1", "0"]),
)


@dataclass
class Served:
    """The API, one client for all of a test's examples, and a service principal's token."""

    api: EmbeddedApi
    client: TestClient[Any]
    auth: Headers


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    with ExitStack() as stack:
        url = None
        if request.param == "postgres":
            server = request.getfixturevalue("server_url")
            url = stack.enter_context(fresh_database(server, prefix="crm_accept"))
        api = stack.enter_context(embedded_api(tmp_path, database_url=url))
        client = stack.enter_context(TestClient(app=api.app))
        yield Served(api, client, api.token("svc", "sales", "service"))


def send(client: TestClient[Any], method: str, url: str, body: Any, auth: Headers) -> Any:
    response = client.request(method, url, json=body, headers=auth)
    assert response.status_code < 500, (url, body, response.text)
    return response.json() if response.status_code in (200, 201) else None


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_accepted_command_is_applied_by_every_projection(
    served: Served, data: st.DataObject
) -> None:
    run_story(served.client, served.auth, data)
    api = served.api
    api.catch_up()
    head = api.runtime.app.head_position()
    for name in PROJECTIONS:
        status = api.store.status(name)
        assert status.dead_letters == 0, name
        assert status.last_position == head, name


def run_story(client: TestClient[Any], auth: Headers, data: st.DataObject) -> None:
    customer = send(client, "POST", "/v1/customers", customer_body(data), auth)
    if customer is None:
        customer = send(client, "POST", "/v1/customers", {"name": "fallback"}, auth)
    cid = customer["id"]
    order = {
        "order_id": data.draw(texts(bound.PERSON)),
        "amount": data.draw(amounts),
        "currency": "EUR",
        "ordered_at": data.draw(instants),
    }
    send(client, "POST", f"/v1/customers/{cid}/orders", order, auth)
    opened = {"customer_id": cid, "channel": "chat", "subject": data.draw(texts(bound.LINE))}
    conversation = send(client, "POST", "/v1/conversations", opened, auth)
    if conversation is not None:
        message = {
            "direction": "inbound",
            "author": data.draw(texts(bound.LINE)),
            "content": data.draw(texts(bound.MESSAGE, text_chars)),
            "sent_at": data.draw(instants),
        }
        send(client, "POST", f"/v1/conversations/{conversation['id']}/messages", message, auth)
    task = {
        "customer_id": cid,
        "title": data.draw(texts(bound.LINE)),
        "due_at": data.draw(instants),
    }
    created = send(client, "POST", "/v1/tasks", task, auth)
    if created is not None:
        due = {
            "due_at": data.draw(instants),
            "description": data.draw(texts(bound.DOCUMENT, text_chars)),
        }
        send(client, "PATCH", f"/v1/tasks/{created['id']}", due, auth)


def customer_body(data: st.DataObject) -> dict[str, Any]:
    return {
        "name": data.draw(texts(bound.LINE)),
        "company": data.draw(texts(bound.LINE)),
        "address": data.draw(texts(bound.ADDRESS, text_chars)),
        "tags": data.draw(st.lists(st.from_regex(TAG, fullmatch=True), max_size=60)),
        "consents": {"email_marketing": data.draw(st.booleans())},
        "owner_department": "sales",
    }


def test_extreme_amounts_and_times_are_refused_with_the_field_named(served: Served) -> None:
    """The regression: these were accepted and stopped the read side for good."""
    client, auth = served.client, served.auth
    cid = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()["id"]
    task = {"customer_id": cid, "title": "t", "due_at": "0001-01-01T00:00:00+14:00"}
    refused = client.post("/v1/tasks", json=task, headers=auth)
    assert (refused.status_code, refused.json()["field"]) == (422, "due_at")
    order = {"order_id": "o", "amount": "1e999999", "currency": "EUR"}
    refused = client.post(f"/v1/customers/{cid}/orders", json=order, headers=auth)
    assert (refused.status_code, refused.json()["field"]) == (422, "amount")
    late = order | {"amount": "1", "ordered_at": "9999-12-31T23:59:59-23:59"}
    refused = client.post(f"/v1/customers/{cid}/orders", json=late, headers=auth)
    assert (refused.status_code, refused.json()["field"]) == (422, "ordered_at")
    opened = {"customer_id": cid, "channel": "chat", "subject": "s"}
    conversation = client.post("/v1/conversations", json=opened, headers=auth).json()["id"]
    ahead = {
        "direction": "inbound",
        "author": "a",
        "content": "c",
        "sent_at": "9000-01-01T00:00:00Z",
    }
    refused = client.post(f"/v1/conversations/{conversation}/messages", json=ahead, headers=auth)
    assert (refused.status_code, refused.json()["field"]) == (422, "sent_at")  # never last
