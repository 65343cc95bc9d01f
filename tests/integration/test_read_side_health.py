"""Dead letters show: `/readyz` is not ready while a projection holds one (the embedded
default here, as with PostgreSQL), `/metrics` counts them, and once they are retried
after a fix the service is ready again. And a read-model store that does not answer
(its tables locked) leaves `/readyz` and `/metrics` answering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from litestar.testing import TestClient
from msgspec.structs import replace

from consumers.follower import retry_from_store
from domain.base import Context, DomainEvent
from domain.customer import Customer, CustomerRegistered
from domain.task import Task
from projections import PROJECTIONS
from projections.base import Change, Rows
from projections.dispatch import DispatchProjection
from tests.integration.api_support import (
    LIVENESS_S,
    answered_within_liveness,
    embedded_api,
    eventually_ready,
)


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
        assert retry_from_store(api.runtime.app, api.store, sales) == (1, 0, 0)
        assert client.get("/readyz").status_code == 200
        customers = client.get("/v1/departments/sales/customers", headers=headers).json()
        assert [c["name"] for c in customers["items"]] == ["Ada"]


def test_probes_answer_while_the_read_models_are_locked(tmp_path: Path, pg_url: str) -> None:
    """A migration holding the projections' table (ACCESS EXCLUSIVE) made each `/readyz`
    and `/metrics` wait as long as the lock, holding one of the server's threads apiece.
    They answer now, again and again, and the read models' checks say they got no
    answer; once the lock goes, the service is ready again."""
    with embedded_api(tmp_path, database_url=pg_url) as api, TestClient(app=api.app) as client:
        api.catch_up()
        assert client.get("/readyz").json()["checks"]["dead_letters"] == "ok"
        with psycopg.connect(pg_url, autocommit=True) as migration, migration.transaction():
            migration.execute("LOCK TABLE crm_projections IN ACCESS EXCLUSIVE MODE")
            answers = [answered_within_liveness(client, "/readyz") for _ in range(3)]
            scrape, _ = answered_within_liveness(client, "/metrics")
        back = eventually_ready(client)
    for answer, took in answers:
        body = answer.json()
        assert (answer.status_code, body["checks"]["event_store"]) == (503, "ok")
        assert body["checks"]["dead_letters"].startswith("unknown: no answer within")
        assert body["checks"]["projections"].startswith("unknown: no answer within")
        assert took < LIVENESS_S
    assert scrape.status_code == 200
    assert "crm_projection_dead_letters" not in scrape.text  # left out, not waited for
    assert back


def test_times_at_the_calendar_edges_keep_the_read_side_going(tmp_path: Path) -> None:
    """The issue's reproduction: a task due 0001-01-01T00:00:00+14:00 (year 0 in UTC) and
    an order of 9999-12-31T23:59:59-23:59 (year 10000) stopped the embedded read side.
    The API refuses such times now; events stored before it did still apply."""
    first = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        headers = api.token("sam", "sales", "agent")
        created = stored_before_the_bounds(api.runtime.app, first, last)
        customer = client.get(f"/v1/tasks/{created}", headers=headers).json()["customer_id"]
        task = {"customer_id": customer, "title": "t", "due_at": first.isoformat()}
        refused = client.post("/v1/tasks", json=task, headers=headers)
        assert (refused.status_code, refused.json()["field"]) == (422, "due_at")
        api.catch_up()
        board = client.get("/v1/departments/sales/tasks?min_position=3", headers=headers)
        assert board.status_code == 200, board.text
        (row,) = board.json()["items"]
        assert (row["task_id"], datetime.fromisoformat(row["due_at"])) == (str(created), first)
        assert client.get("/readyz").status_code == 200


def stored_before_the_bounds(app: Any, first: datetime, last: datetime) -> UUID:
    """A customer with an order of `last` and a task due `first`, stored directly: the
    task's id."""
    ctx = Context(
        actor="sam", actor_department="sales", occurred_at=datetime.now(UTC), correlation_id="c"
    )
    customer = Customer.register(ctx, customer_id=uuid4(), name="Ada", owner_department="sales")
    customer.record_order(ctx, order_id="o-1", amount="1", currency="EUR")
    customer._pending[-1] = replace(customer._pending[-1], ordered_at=last)
    task = Task.create(ctx, task_id=uuid4(), customer=customer, title="t")
    task._pending[0] = replace(task._pending[0], due_at=first)
    app.record(customer, task)
    return task.id
