"""Dead letters show: `/readyz` is not ready while a projection holds one (the embedded
default here, as with PostgreSQL), `/metrics` counts them, and once they are retried
after a fix the service is ready again."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from consumers.follower import retry_from_store
from domain.base import DomainEvent
from domain.customer import CustomerRegistered
from projections import PROJECTIONS
from projections.base import Change, Rows
from projections.dispatch import DispatchProjection
from tests.integration.api_support import embedded_api


def failing(event: Any, rows: Rows) -> list[Change]:
    raise RuntimeError("a bug")


def test_dead_letters_make_the_service_not_ready_until_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sales = PROJECTIONS["sales"]
    assert isinstance(sales, DispatchProjection)
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        headers = api.token("sam", "sales", "agent")
        body = {"name": "Ada", "owner_department": "sales"}
        assert client.post("/v1/customers", json=body, headers=headers).status_code == 201
        with monkeypatch.context() as broken:  # a bug in the projection, fixed afterwards
            kind: type[DomainEvent] = CustomerRegistered
            broken.setitem(sales.appliers, kind, failing)
            api.catch_up()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "sales 1" in ready.json()["checks"]["dead_letters"]
        assert 'crm_projection_dead_letters{projection="sales"} 1.0' in client.get("/metrics").text
        assert retry_from_store(api.runtime.app, api.store, sales) == (1, 0)
        assert client.get("/readyz").status_code == 200
        customers = client.get("/v1/departments/sales/customers", headers=headers).json()
        assert [c["name"] for c in customers["items"]] == ["Ada"]


def test_times_at_the_calendar_edges_keep_the_read_side_going(tmp_path: Path) -> None:
    """The issue's reproduction: a task due 0001-01-01T00:00:00+14:00 (year 0 in UTC) and
    an order of 9999-12-31T23:59:59-23:59 (year 10000) stopped the embedded read side."""
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        headers = api.token("sam", "sales", "agent")
        body = {"name": "Ada", "owner_department": "sales"}
        customer = client.post("/v1/customers", json=body, headers=headers).json()["id"]
        order = {"order_id": "o-1", "amount": "1", "currency": "EUR"}
        order["ordered_at"] = "9999-12-31T23:59:59-23:59"
        url = f"/v1/customers/{customer}/orders"
        assert client.post(url, json=order, headers=headers).status_code == 200
        task = {"customer_id": customer, "title": "t", "due_at": "0001-01-01T00:00:00+14:00"}
        created = client.post("/v1/tasks", json=task, headers=headers)
        assert created.status_code == 201, created.text
        api.catch_up()
        position = created.json()["position"]
        board = client.get(f"/v1/departments/sales/tasks?min_position={position}", headers=headers)
        assert board.status_code == 200, board.text
        (row,) = board.json()["items"]
        assert datetime.fromisoformat(row["due_at"]) == datetime.fromisoformat(task["due_at"])
        assert client.get("/readyz").status_code == 200
