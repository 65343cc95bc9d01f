"""If-Match a command could never honour is a 400 naming it, and runs nothing, on both
stores: a weak entity tag (If-Match compares strongly, RFC 9110 13.1.1), a tag quoted
on one side only, and a version on a command that creates (there is none to match).
Each ran its command as if the condition held."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.integration.api_support import EmbeddedApi

Client = TestClient[Any]


@pytest.fixture
def api(api_on_each_store: EmbeddedApi) -> EmbeddedApi:
    return api_on_each_store


def refused(sent: Any, api: EmbeddedApi, head: int) -> str:
    """The detail of a 400 problem, with nothing stored."""
    assert sent.status_code == 400, sent.text
    assert sent.headers["content-type"].startswith("application/problem+json")
    assert api.runtime.app.head_position() == head
    detail: str = sent.json()["detail"]
    return detail


@pytest.mark.parametrize("etag", ['W/"1"', "W/1", 'W/ "1"'])
def test_a_weak_entity_tag_in_if_match_is_a_400(api: EmbeddedApi, etag: str) -> None:
    with TestClient(app=api.app) as client:
        auth = api.token("sam", "sales", "agent")
        customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth)
        url = f"/v1/customers/{customer.json()['id']}/tags"
        assert customer.headers["etag"] == '"1"'  # the API gives strong tags only
        sent = client.post(url, json={"tag": "vip"}, headers=auth | {"If-Match": etag})
        assert "weak" in refused(sent, api, head=1)
        strong = client.post(url, json={"tag": "vip"}, headers=auth | {"If-Match": '"1"'})
        assert strong.status_code == 200, strong.text


@pytest.mark.parametrize("etag", ['"1', '1"', '""1""'])
def test_an_entity_tag_quoted_on_one_side_is_a_400(api: EmbeddedApi, etag: str) -> None:
    with TestClient(app=api.app) as client:
        auth = api.token("sam", "sales", "agent")
        customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()
        url = f"/v1/customers/{customer['id']}/tags"
        sent = client.post(url, json={"tag": "vip"}, headers=auth | {"If-Match": etag})
        assert refused(sent, api, head=1).startswith("If-Match must be an ETag like")


def test_if_match_on_a_command_that_creates_is_a_400_unless_a_star(api: EmbeddedApi) -> None:
    """`*` asks only that the target exist; the command then runs on whatever version is
    current (an aggregate that does not exist is a 404, as without it)."""
    with TestClient(app=api.app) as client:
        auth = api.token("sam", "sales", "agent")
        created = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()
        opened = {"customer_id": created["id"], "channel": "chat", "subject": "s"}
        for url, body in (
            ("/v1/customers", {"name": "Bob"}),
            ("/v1/conversations", opened),
            ("/v1/tasks", {"customer_id": created["id"], "title": "call"}),
        ):
            sent = client.post(url, json=body, headers=auth | {"If-Match": '"1"'})
            assert "creating an aggregate" in refused(sent, api, head=1), url
        star = auth | {"If-Match": "*"}
        assert client.post("/v1/customers", json={"name": "Bob"}, headers=star).status_code == 201
        tags = f"/v1/customers/{created['id']}/tags"
        assert client.post(tags, json={"tag": "vip"}, headers=star).json()["version"] == 2
        unknown = "/v1/customers/00000000-0000-4000-8000-000000000001/tags"
        assert client.post(unknown, json={"tag": "vip"}, headers=star).status_code == 404


@pytest.mark.parametrize(
    "etag", ['"00001"', '"01"', '"+1"', '"1_0"', '"1e0"', '" 1"', "1", '"9223372036854775808"']
)
def test_an_if_match_not_in_the_form_an_etag_is_given_is_a_400(api: EmbeddedApi, etag: str) -> None:
    """The API gives `ETag: "1"`; `"00001"` and an unquoted `1` were read as version 1
    and the command ran. A tag in that form naming no version the customer has is the
    409 of a stale one (tags compare as opaque strings: only the current one matches)."""
    with TestClient(app=api.app) as client:
        auth = api.token("sam", "sales", "agent")
        customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()
        url = f"/v1/customers/{customer['id']}/tags"
        sent = client.post(url, json={"tag": "vip"}, headers=auth | {"If-Match": etag})
        detail = refused(sent, api, head=1)
        assert detail.startswith('If-Match must be an ETag like "3"'), detail
        assert repr(etag) in detail
        for never_given in ('"0"', '"2"', '"9223372036854775807"'):
            stale = client.post(url, json={"tag": "vip"}, headers=auth | {"If-Match": never_given})
            assert stale.status_code == 409, stale.text
            assert stale.json()["actual_version"] == 1
        matched = client.post(url, json={"tag": "vip"}, headers=auth | {"If-Match": '"1"'})
        assert matched.status_code == 200, matched.text
