"""Values at the edges of what the domain accepts apply on both read-model stores.

Times whose UTC instant lies outside Python's years 1-9999 (0001-01-01T00:00+14:00 is
in year 0, 9999-12-31T23:59:59-23:59 in year 10000) are stored and loaded back as the
same instants, so later events that load their rows apply too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest
from msgspec.structs import replace

from consumers import readmodel_queries as rq
from consumers.projecting import Item, project
from consumers.readmodel_store import ReadModelStore
from domain.base import Context, DomainEvent
from domain.customer import Customer
from domain.task import Task
from projections import PROJECTIONS
from tests.integration.projection_support import open_store

FIRST = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModelStore]:
    opened = open_store(request, tmp_path)
    yield opened
    opened.close()


def now(minutes: int) -> Context:
    at = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return Context(actor="ann", actor_department="support", occurred_at=at, correlation_id="c")


def edge_events() -> list[DomainEvent]:
    """The domain refuses such times now (1900-9999 in UTC): these are events stored
    before it did, made by swapping the times into events it decides today."""
    customer = Customer.register(
        now(0), customer_id=uuid4(), name="Ada", owner_department="support"
    )
    customer.record_order(now(1), order_id="o-1", amount="1", currency="EUR")
    task = Task.create(
        now(2), task_id=uuid4(), customer=customer, title="t", due_at=now(9).occurred_at
    )
    customer.change_order_status(now(3), "o-1", "paid")  # loads the order row
    task.change_due(now(4), now(10).occurred_at)  # loads the task row
    registered, ordered, paid = customer.collect_events()
    created, moved = task.collect_events()
    return [
        registered,
        replace(ordered, ordered_at=LAST),
        replace(created, due_at=FIRST),
        paid,
        replace(moved, from_due_at=FIRST, to_due_at=LAST),
    ]


def apply_one_by_one(store: ReadModelStore, events: list[DomainEvent]) -> None:
    for name, projection in PROJECTIONS.items():
        generation = store.install(projection)
        for number, event in enumerate(events):
            with store.session(projection, generation) as session:
                project(session, projection, [Item("t", 0, number, number + 1, b"", event)])
        assert store.status(name).dead_letters == 0, name


def test_times_beyond_the_utc_calendar_apply_and_load_back(store: ReadModelStore) -> None:
    events = edge_events()
    apply_one_by_one(store, events)
    (order,) = dump(store, "shared", "orders")
    assert (order["ordered_at"], order["status"]) == (LAST, "paid")
    (task,) = rq.department_tasks(store, "support", datetime.now(UTC))
    assert task["due_at"] == LAST
    assert not task["overdue"]


def dump(store: ReadModelStore, name: str, table: str) -> list[dict[str, object]]:
    generation = store.live_generation(name)
    assert generation is not None
    spec = next(t for t in PROJECTIONS[name].tables if t.name == table)
    return store.dump(name, generation, spec)
