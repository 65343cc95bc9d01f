"""The embedded follower: projections follow the event store in process (SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec

from bench.workload import Workload
from consumers.follower import EventStoreFollower, applied_position, rebuild_from_store
from consumers.key_stores import SqliteKeyStore
from consumers.keyring import Keyring
from consumers.sealed_rows import open_rows, sealed
from consumers.store_sqlite import SqliteStore
from domain.base import ERASED, Context
from domain.customer import Customer
from domain.task import Task
from projections import PROJECTIONS
from services.event_store import open_event_store
from tests.unit.projections.memory import replay


def test_follower_applies_new_events_once_and_resumes(tmp_path: Path) -> None:
    keyring = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
    app = open_event_store(None, tmp_path, keyring)
    workload = Workload(seed=3)
    events = list(workload.events(1200))
    store = SqliteStore(tmp_path / "readmodels.db")
    try:
        app.events.put(events[:600])
        follower = EventStoreFollower(app, store, PROJECTIONS.values(), batch_size=250)
        while follower.step():
            pass
        assert applied_position(store) == app.head_position() == 600
        app.events.put(events[600:])
        restarted = EventStoreFollower(app, store, PROJECTIONS.values())
        while restarted.step():  # a restart resumes where the stored position says
            pass
        assert applied_position(store) == 1200
        expected = replay(PROJECTIONS["support"], events).sorted_rows("tasks")
        generation = store.live_generation("support")
        assert generation is not None
        spec = next(t for t in PROJECTIONS["support"].tables if t.name == "tasks")
        stored = store.dump("support", generation, spec)
        titles = {"sealed" if sealed(row["title"]) else row["title"] for row in stored}
        assert titles == {"sealed", ERASED}  # as the events carry them, or erased
        open_rows(keyring, [(row, spec.personal) for row in stored])
        assert stored == sorted(expected, key=lambda r: r["task_id"])
        old = store.live_generation("stats")
        assert rebuild_from_store(app, store, PROJECTIONS["stats"]) != old
        assert applied_position(store) == 1200
    finally:
        store.close()
        app.close()


def test_follower_pages_are_bounded_in_bytes(tmp_path: Path) -> None:
    """A page stops at the event whose stored state brings it to `page_bytes`, however
    many `batch_size` allows; the pages still apply every event, in order."""
    keyring = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
    app = open_event_store(None, tmp_path, keyring)
    store = SqliteStore(tmp_path / "readmodels.db")
    try:
        app.events.put(list(Workload(seed=5).events(120)))
        sizes = [len(n.state) for n in app.recorder.select_notifications(1, 1000)]
        budget = sum(sizes) // 10
        follower = EventStoreFollower(
            app, store, PROJECTIONS.values(), batch_size=500, page_bytes=budget
        )
        first = 0
        while read := follower.step():
            page = sizes[first : first + read]
            assert sum(page[:-1]) < budget, page
            assert first + read == len(sizes) or sum(page) >= budget, page
            first += read
        assert first == len(sizes) == applied_position(store) == app.head_position()
    finally:
        store.close()
        app.close()


def test_follower_applies_times_at_the_edges_of_the_calendar(tmp_path: Path) -> None:
    """`due_at` 0001-01-01T00:00+14:00 is year 0 in UTC, `ordered_at`
    9999-12-31T23:59:59-23:59 year 10000. The domain refuses both now (times lie within
    1900-9999 in UTC), but events stored before it did must still apply, and the rows
    give the same instants back."""
    first = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))
    now = Context(
        actor="ann", actor_department="sales", occurred_at=datetime.now(UTC), correlation_id="c"
    )
    customer = Customer.register(now, customer_id=uuid4(), name="Ada", owner_department="sales")
    customer.record_order(now, order_id="o-1", amount="1", currency="EUR")
    customer._pending[-1] = msgspec.structs.replace(customer._pending[-1], ordered_at=last)
    task = Task.create(now, task_id=uuid4(), customer=customer, title="t")
    task._pending[0] = msgspec.structs.replace(task._pending[0], due_at=first)
    keyring = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
    app = open_event_store(None, tmp_path, keyring)
    store = SqliteStore(tmp_path / "readmodels.db")
    try:
        app.record(customer, task)
        follower = EventStoreFollower(app, store, PROJECTIONS.values())
        while follower.step():
            pass
        assert applied_position(store) == app.head_position() == 3
        assert all(store.status(name).dead_letters == 0 for name in PROJECTIONS)
        (row,) = dumped(store, "support", "tasks")
        assert row["due_at"] == first
        (order,) = dumped(store, "shared", "orders")
        assert order["ordered_at"] == last
    finally:
        store.close()
        app.close()


def dumped(store: SqliteStore, name: str, table: str) -> list[dict[str, Any]]:
    generation = store.live_generation(name)
    assert generation is not None
    spec = next(t for t in PROJECTIONS[name].tables if t.name == table)
    return store.dump(name, generation, spec)
