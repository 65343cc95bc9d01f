"""Dead letters show: `/readyz` is not ready while a projection holds one (the embedded
default here, as with PostgreSQL), `/metrics` counts them, and once they are retried
after a fix the service is ready again."""

from __future__ import annotations

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
