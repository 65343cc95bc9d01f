"""One response shape on both stores: the same requests to the embedded default (SQLite)
and to PostgreSQL answer JSON of the same types, field by field (booleans, not 0/1;
lists, not comma-joined text; UUIDs; RFC 3339 times), and a completed task shows the
same progress on its own page as on the board."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from tests.integration.api_support import embedded_api

Client = TestClient[Any]
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def shape(value: Any) -> Any:
    """The JSON type of every value, strings told apart by format."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, str):
        return _format(value)
    return type(value).__name__


def _format(text: str) -> str:
    if RFC3339.match(text):
        return "date-time"
    try:
        return "uuid" if str(UUID(text)) == text else "string"
    except ValueError:
        return "string"


def scenario(client: Client, headers: dict[str, str], survey: dict[str, str]) -> dict[str, Any]:
    """Commands through HTTP (the survey's answers by its service), then every read-model
    query; the answers by name."""
    customer = {"name": "Ada", "email": "ada@example.com", "tags": ["vip", "b2b"],
                "owner_department": "sales", "consents": {"email_marketing": True}}  # fmt: skip
    cid = post(client, "/v1/customers", customer, headers)
    post(client, f"/v1/customers/{cid}/shares", {"department": "support"}, headers)
    order = {"order_id": "o-1", "amount": "12.50", "currency": "EUR"}
    post(client, f"/v1/customers/{cid}/orders", order, headers)
    opened = {"customer_id": cid, "channel": "email", "subject": "hi", "department": "sales"}
    conversation = post(client, "/v1/conversations", opened, headers)
    message = {"direction": "inbound", "author": "Ada", "content": "hello"}
    post(client, f"/v1/conversations/{conversation}/messages", message, headers)
    post(client, f"/v1/conversations/{conversation}/close", {"outcome": "resolved"}, headers)
    post(client, f"/v1/conversations/{conversation}/csat", {"score": 5}, survey)
    post(client, f"/v1/conversations/{conversation}/nps", {"score": 9}, survey)
    task = {"customer_id": cid, "title": "call", "assignee": "sam"}
    task["due_at"] = "2099-01-01T00:00:00Z"
    tid = post(client, "/v1/tasks", task, headers)
    post(client, f"/v1/tasks/{tid}/start", {}, headers)
    post(client, f"/v1/tasks/{tid}/progress", {"note": "half", "percent": 50}, headers)
    post(client, f"/v1/tasks/{tid}/complete", {"resolution": "done"}, headers)
    return {"customer": cid, "task": tid}


def reads(client: Client, headers: dict[str, str], ids: dict[str, Any]) -> dict[str, Any]:
    urls = {
        "customers": "/v1/departments/sales/customers",
        "conversations": "/v1/departments/sales/conversations?status=closed",
        "tasks": "/v1/departments/sales/tasks",
        "timeline": f"/v1/customers/{ids['customer']}/timeline",
        "satisfaction": "/v1/stats/satisfaction?granularity=month&department=sales",
        "task_stats": "/v1/stats/tasks?department=sales",
        "task": f"/v1/tasks/{ids['task']}",
    }
    answers = {}
    for name, url in urls.items():
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (name, response.text)
        answers[name] = response.json()
    return answers


def post(client: Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = client.post(url, json=body, headers=headers)
    assert response.status_code in (200, 201), (url, response.text)
    return response.json()["id"]


@pytest.fixture
def answers(pg_url: str, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The same scenario's reads on the embedded default and on PostgreSQL."""
    found = {}
    for name, url in (("sqlite", None), ("postgres", pg_url)):
        with (
            embedded_api(tmp_path / name, database_url=url) as api,
            TestClient(app=api.app) as client,
        ):
            headers = api.token("mia", "sales", "manager")
            ids = scenario(client, headers, api.token("survey", "integration", "service"))
            api.catch_up()
            found[name] = reads(client, headers, ids)
    return found


def test_both_stores_answer_the_same_shapes(answers: dict[str, dict[str, Any]]) -> None:
    for name, sqlite in answers["sqlite"].items():
        assert shape(sqlite) == shape(answers["postgres"][name]), name


def test_rows_carry_booleans_lists_uuids_and_times(answers: dict[str, dict[str, Any]]) -> None:
    for store, found in answers.items():
        (customer,) = found["customers"]["items"]
        assert (customer["archived"], customer["erased"], customer["email_marketing"]) == (
            False, False, True,
        ), store  # fmt: skip
        assert (customer["tags"], customer["departments"]) == (["b2b", "vip"], ["sales", "support"])
        assert (shape(customer["customer_id"]), shape(customer["registered_at"])) == (
            "uuid", "date-time",
        )  # fmt: skip
        entries = found["timeline"]["items"]
        assert {type(e["corrected"]) for e in entries} == {bool}, store


def test_a_completed_task_shows_one_progress(answers: dict[str, dict[str, Any]]) -> None:
    for store, found in answers.items():
        (row,) = found["tasks"]["items"]
        assert found["task"]["status"] == row["status"] == "completed", store
        assert found["task"]["progress"] == row["percent"] == 100, store
