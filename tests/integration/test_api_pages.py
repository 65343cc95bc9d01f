"""Cursor pagination through HTTP: following `next_cursor` of the department views
(customers, conversation queue, task board) and of a timeline gives every row of the
whole list exactly once, in order; a cursor this API did not give is a 400 problem."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from services.api import read_models
from tests.integration.api_support import EmbeddedApi, embedded_api

Client = TestClient[Any]
ID = {"customers": "customer_id", "conversations": "conversation_id", "tasks": "task_id"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedApi, Client]]:
    with (
        embedded_api(tmp_path_factory.mktemp("pages")) as embedded,
        TestClient(app=embedded.app) as client,
    ):
        yield embedded, client


@pytest.fixture(scope="module")
def headers(api: tuple[EmbeddedApi, Client]) -> dict[str, str]:
    """A manager of sales, after a workload of 5 customers with 2 conversations and 2
    tasks each; every other conversation has an inbound message (waiting) and every
    other task a due time, so the NULLs of both sort keys are paged too."""
    embedded, client = api
    manager = embedded.token("mia", "sales", "manager")
    for n in range(5):
        customer = client.post(
            "/v1/customers", json={"name": f"c{n}", "owner_department": "sales"}, headers=manager
        ).json()["id"]
        for k in range(2):
            opened = {"customer_id": customer, "channel": "email", "subject": f"s{k}"}
            conversation = client.post(
                "/v1/conversations", json=opened | {"department": "sales"}, headers=manager
            ).json()["id"]
            if k:
                inbound = {"direction": "inbound", "author": "c", "content": "?"}
                url = f"/v1/conversations/{conversation}/messages"
                assert client.post(url, json=inbound, headers=manager).status_code == 201
            task = {"customer_id": customer, "title": f"t{k}"}
            if k:
                task["due_at"] = f"2030-01-0{n + 1}T10:00:00Z"
            assert client.post("/v1/tasks", json=task, headers=manager).status_code == 201
    embedded.catch_up()
    return manager


def follow(client: Client, url: str, headers: dict[str, str], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({} if cursor is None else {"cursor": cursor})
        page = client.get(url, params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


@pytest.mark.parametrize("view", ["customers", "conversations", "tasks"])
def test_following_cursors_gives_the_whole_view_once(
    api: tuple[EmbeddedApi, Client], headers: dict[str, str], view: str
) -> None:
    _, client = api
    url = f"/v1/departments/sales/{view}"
    whole = client.get(url, params={"limit": 500}, headers=headers).json()
    assert whole["next_cursor"] is None
    assert len(whole["items"]) == (5 if view == "customers" else 10)
    paged = follow(client, url, headers, limit=2)
    assert [row[ID[view]] for row in paged] == [row[ID[view]] for row in whole["items"]]


def test_following_cursors_gives_the_whole_timeline_once(
    api: tuple[EmbeddedApi, Client], headers: dict[str, str]
) -> None:
    _, client = api
    customers = client.get("/v1/departments/sales/customers", headers=headers).json()["items"]
    url = f"/v1/customers/{customers[0]['customer_id']}/timeline"
    whole = client.get(url, params={"limit": 500}, headers=headers).json()["items"]
    assert len(whole) >= 3
    assert follow(client, url, headers, limit=1) == whole


def test_a_timeline_page_stops_at_its_size_bound_and_its_cursor_names_the_rest(
    api: tuple[EmbeddedApi, Client], headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page holds at most `TIMELINE_PAGE_BYTES` of messages' text past its first entry
    (an entry may hold 64 kB): fewer entries than `limit`, and the rest on the next."""
    _, client = api
    customers = client.get("/v1/departments/sales/customers", headers=headers).json()["items"]
    url = f"/v1/customers/{customers[1]['customer_id']}/timeline"
    whole = client.get(url, params={"limit": 500}, headers=headers).json()["items"]
    monkeypatch.setattr(read_models, "TIMELINE_PAGE_BYTES", 1)
    first = client.get(url, params={"limit": 500}, headers=headers).json()
    assert first["next_cursor"] is not None
    assert 0 < len(first["items"]) < len(whole)
    assert follow(client, url, headers, limit=500) == whole


@pytest.mark.parametrize("cursor", ["not-a-cursor", "WzFd", "bnVsbA=="])
def test_a_cursor_this_api_did_not_give_is_a_400_problem(
    api: tuple[EmbeddedApi, Client], headers: dict[str, str], cursor: str
) -> None:
    _, client = api
    for url in ("/v1/departments/sales/conversations", "/v1/departments/sales/tasks"):
        answer = client.get(url, params={"cursor": cursor}, headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00", "2030-01-01T10:00:00", "2030-01-01"])
def test_a_cursor_time_without_a_zone_is_a_400_problem(
    api: tuple[EmbeddedApi, Client], headers: dict[str, str], time: str
) -> None:
    """Cursors carry their times with a zone; one without was read in the server's local
    zone (on SQLite, year 1 then failed in the store: a 500)."""
    _, client = api
    customer = client.get("/v1/departments/sales/customers", headers=headers).json()["items"][0]
    row_id = str(uuid.uuid4())
    forged = {
        "/v1/departments/sales/conversations": [time, row_id],
        "/v1/departments/sales/tasks": ["mia", "open", time, row_id],
        f"/v1/customers/{customer['customer_id']}/timeline": [time, "entry"],
    }
    for url, values in forged.items():
        cursor = base64.urlsafe_b64encode(json.dumps(values).encode()).decode()
        answer = client.get(url, params={"cursor": cursor}, headers=headers)
        assert answer.status_code == 400, (url, answer.text)
        assert "cursor" in answer.json()["detail"]
