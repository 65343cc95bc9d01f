"""The event store reads one aggregate's events a page at a time (`stored_events`):
loading it sealed, its state as of an instant and its opened history cost memory for a
page, not for the whole history (a customer's has no bound)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.base import Context
from domain.customer import Customer
from services import event_store
from services.event_store import CrmApplication

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _ctx(minutes: int) -> Context:
    return Context(
        actor="t", actor_department="sales", occurred_at=T0 + timedelta(minutes=minutes),
        correlation_id="c",
    )  # fmt: skip


def test_an_aggregate_s_events_are_read_a_page_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ada = Customer.register(
        _ctx(0), customer_id=uuid.uuid4(), name="Ada 0", owner_department="sales"
    )
    for n in range(1, 7):
        ada.update_profile(_ctx(n), name=f"Ada {n}")
    app.record(ada)  # seven events
    monkeypatch.setattr(event_store, "READ_PAGE", 3)
    limits: list[Any] = []
    select = app.recorder.select_events

    def counted(*args: Any, **kwargs: Any) -> Any:
        limits.append(kwargs.get("limit"))
        return select(*args, **kwargs)

    app.recorder.select_events = counted  # type: ignore[method-assign]

    assert [s.originator_version for s in app.stored_events(ada.id)] == list(range(1, 8))
    assert limits == [3, 3, 3]  # 3 + 3 + 1: the short page is the last
    limits.clear()
    assert [e.name for e in app.history(ada.id)] == [f"Ada {n}" for n in range(7)]  # type: ignore[attr-defined]
    assert app.sealed_load(Customer, ada.id, version=4).version == 4
    past = app.as_of(Customer, ada.id, T0 + timedelta(minutes=4, seconds=30))
    assert (past.version, past.name) == (5, "Ada 4")
    assert set(limits) == {3}  # every read paged
    assert app.as_of(Customer, ada.id, T0 + timedelta(days=1)) == app.load(Customer, ada.id)
