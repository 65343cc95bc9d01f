"""One contract for every read-model store adapter: PostgreSQL and SQLite.

The reference is the in-memory fake of the unit tests: replaying the same events
through an adapter must give the same rows.
"""

from __future__ import annotations

import base64
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.workload import Workload
from consumers.batch_commit import commit
from consumers.projecting import Item, project
from consumers.readmodel_store import ReadModelStore, table_writes
from consumers.store_postgres import PostgresStore
from consumers.store_sqlite import SqliteStore
from domain.base import ERASED
from domain.task import TaskStarted
from projections import PROJECTIONS
from projections.base import DeleteWhere, Number, Scrub, Segment, SetOperation, Upsert, table
from projections.dispatch import DispatchProjection, no_rows
from tests.integration.projection_support import normal, open_store
from tests.unit.projections.memory import replay

EVENTS = list(Workload(seed=11).events(3000))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModelStore]:
    opened = open_store(request, tmp_path)
    yield opened
    opened.close()


def normalised(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: normal(v) for k, v in row.items()} for row in rows]


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_replay_gives_the_rows_of_the_reference(store: ReadModelStore, name: str) -> None:
    projection = PROJECTIONS[name]
    generation = store.install(projection)
    items = [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(EVENTS)]
    for start in range(0, len(items), 700):
        with store.session(projection, generation) as session:
            project(session, projection, items[start : start + 700])
    reference = replay(projection, EVENTS)
    for spec in projection.tables:
        expected = [reference.tables[spec.name][k] for k in sorted(reference.tables[spec.name])]
        assert normalised(store.dump(name, generation, spec)) == normalised(expected), spec.name
    status = store.status(name)
    assert (status.events, status.last_position, status.dead_letters) == (len(EVENTS), 3000, 0)
    assert status.positions == {("t", 0): len(EVENTS)}


def test_counters_and_set_operations(store: ReadModelStore) -> None:
    projection = PROJECTIONS["sales"]
    generation = store.install(projection)
    tables = {t.name: t for t in projection.tables}
    customer = uuid.uuid4()
    row = dict.fromkeys(tables["customers"].column_names) | {
        "customer_id": customer, "name": "Ada", "email": "a@b.c", "visible": True,
        "open_tasks": 0, "order_count": 1, "registered_at": datetime(2024, 1, 1, tzinfo=UTC),
    }  # fmt: skip
    total = {"customer_id": customer, "currency": "EUR"}
    segment = Segment()
    segment.rows[("customers", (customer,))] = row
    segment.counters[("order_totals", (customer, "EUR"))] = (
        total,
        {"orders": 1, "total": Decimal("2.5")},
    )
    for _ in range(2):
        with store.session(projection, generation) as session:
            session.write(list(table_writes(tables, segment)), [Scrub("customers", customer)])
    (totals,) = store.dump("sales", generation, tables["order_totals"])
    assert (totals["orders"], normal(totals["total"])) == (2, 5.0)
    (stored,) = store.dump("sales", generation, tables["customers"])
    assert (stored["name"], stored["email"], stored["phone"]) == (ERASED, ERASED, None)
    with store.session(projection, generation) as session:
        session.write([], [DeleteWhere("order_totals", "customer_id", customer)])
    assert store.dump("sales", generation, tables["order_totals"]) == []


def test_numeric_counters_add_exactly_across_batches(store: ReadModelStore) -> None:
    """Each order in its own batch, so the store adds the stored total (SQLite added its
    TEXT as REAL: 1000000000000.3 where PostgreSQL's numeric keeps 1000000000000.3003)."""
    projection = PROJECTIONS["sales"]
    generation = store.install(projection)
    tables = {t.name: t for t in projection.tables}
    key: dict[str, Any] = {"customer_id": uuid.uuid4(), "currency": "EUR"}
    amounts = ("999999999999.9999", "0.0001", "0.1", "0.2", "0.0003")
    for amount in amounts:
        segment = Segment()
        counters: dict[str, Number] = {"orders": 1, "total": Decimal(amount)}
        segment.counters[("order_totals", tuple(key.values()))] = (key, counters)
        with store.session(projection, generation) as session:
            session.write(list(table_writes(tables, segment)), [])
    (totals,) = store.dump("sales", generation, tables["order_totals"])
    assert (totals["orders"], totals["total"]) == (5, Decimal("1000000000000.3003"))
    assert str(totals["total"]) == "1000000000000.3003"


def _seed_customers(store: ReadModelStore, generation: int, emails: dict[uuid.UUID, str]) -> None:
    """A `sales` customer and an order total per id, each customer with the given email."""
    tables = {t.name: t for t in PROJECTIONS["sales"].tables}
    segment = Segment()
    for customer, email in emails.items():
        segment.rows[("customers", (customer,))] = dict.fromkeys(
            tables["customers"].column_names
        ) | {"customer_id": customer, "name": "Ada", "email": email, "visible": True}
        segment.rows[("order_totals", (customer, "EUR"))] = {
            "customer_id": customer, "currency": "EUR", "orders": 1, "total": Decimal(1),
        }  # fmt: skip
    with store.session(PROJECTIONS["sales"], generation) as session:
        session.write(list(table_writes(tables, segment)), [])


def test_set_operations_closing_one_segment_give_the_rows_of_running_them_in_order(
    store: ReadModelStore,
) -> None:
    """Archive and erasure operations of many customers in one write (an adapter may
    group them): each deletes or blanks exactly what it would have on its own."""
    projection = PROJECTIONS["sales"]
    generation = store.install(projection)
    tables = {t.name: t for t in projection.tables}
    a, b, c = sorted(uuid.uuid4() for _ in range(3))
    _seed_customers(store, generation, {a: "a@x.y", b: "b@x.y", c: "c@x.y"})
    closing: list[SetOperation] = [
        Scrub("customers", a), DeleteWhere("order_totals", "customer_id", a),
        DeleteWhere("customers", "customer_id", b), Scrub("customers", c),
        DeleteWhere("customers", "customer_id", a), Scrub("customers", b),
    ]  # fmt: skip
    with store.session(projection, generation) as session:
        session.write([], closing)
    customers = store.dump("sales", generation, tables["customers"])
    assert [(r["customer_id"], r["name"], r["email"]) for r in customers] == [(c, ERASED, ERASED)]
    totals = store.dump("sales", generation, tables["order_totals"])
    assert [r["customer_id"] for r in totals] == [b, c]


def test_a_delete_matching_a_personal_column_keeps_its_place_among_scrubs(
    store: ReadModelStore,
) -> None:
    """Deleting by a column a scrub blanks does not commute with that scrub: the
    customer scrubbed before the delete stays (blanked), the one scrubbed after is gone."""
    projection = PROJECTIONS["sales"]
    generation = store.install(projection)
    first, second = uuid.uuid4(), uuid.uuid4()
    _seed_customers(store, generation, {first: "same@x.y", second: "same@x.y"})
    closing: list[SetOperation] = [
        Scrub("customers", first),
        DeleteWhere("customers", "email", "same@x.y"),
        Scrub("customers", second),
    ]
    with store.session(projection, generation) as session:
        session.write([], closing)
    spec = {t.name: t for t in projection.tables}["customers"]
    customers = store.dump("sales", generation, spec)
    assert [(r["customer_id"], r["email"]) for r in customers] == [(first, ERASED)]


def test_rebuild_switches_the_stable_views(store: ReadModelStore) -> None:
    projection = PROJECTIONS["marketing"]
    live = store.install(projection)
    items = [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(EVENTS[:300])]
    with store.session(projection, live) as session:
        project(session, projection, items)
    query = "SELECT count(*) AS n FROM {c}"
    before = store.fetch(query, {"c": "marketing.customers"}, {})[0]["n"]
    new = store.create_generation(projection)
    assert new == live + 1
    assert store.fetch(query, {"c": "marketing.customers"}, {})[0]["n"] == before
    store.switch(projection, new)
    assert store.live_generation("marketing") == new
    assert store.fetch(query, {"c": "marketing.customers"}, {})[0]["n"] == 0
    assert before > 0


def test_a_rebuilt_generation_goes_live_with_statistics(pg_url: str) -> None:
    """PostgreSQL only: without statistics a fresh generation's pages are planned blind."""
    store = PostgresStore(pg_url)
    projection = PROJECTIONS["shared"]
    store.install(projection)
    new = store.create_generation(projection)
    with store.session(projection, new) as session:
        project(session, projection, [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(EVENTS)])
    query = (
        "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s AND c.relkind = 'r'"
    )
    schema, tables = {"schema": f"shared_v{new}"}, {t.name for t in projection.tables}

    def tuples() -> dict[str, float]:  # reltuples: -1 until something analyzed the table
        return {r["relname"]: r["reltuples"] for r in store.fetch(query, {}, schema)}

    assert {name for name, n in tuples().items() if n < 0} >= tables  # nothing looked yet
    store.switch(projection, new)
    counted = tuples()
    customers = store.fetch("SELECT count(*) AS n FROM {c}", {"c": "shared.customers"}, {})
    assert counted["customers"] == customers[0]["n"] > 0
    assert all(counted[name] >= 0 for name in tables)
    store.close()


def test_batches_of_one_projection_run_one_at_a_time(store: ReadModelStore) -> None:
    """Two consumers of one projection (other partitions, other processes) may touch the
    same rows: the second batch waits for the first to commit before it loads anything."""
    projection = PROJECTIONS["sales"]
    generation = store.install(projection)
    second_started = threading.Event()
    order: list[str] = []

    def second_batch() -> None:
        second_started.set()
        with store.session(projection, generation) as session:
            session.lock_positions([("t", 1)])
            order.append("second")

    with store.session(projection, generation) as session:
        session.lock_positions([("t", 0)])
        other = threading.Thread(target=second_batch)
        other.start()
        second_started.wait()
        other.join(timeout=0.5)  # blocked: it cannot finish while this batch is open
        order.append("first")
    other.join(timeout=10)
    assert order == ["first", "second"]


def test_rejected_records_are_kept_apart_and_older_generations_get_their_table(
    store: ReadModelStore,
) -> None:
    projection = PROJECTIONS["stats"]
    generation = store.install(projection)
    refused = Item("t", 0, 0, 0, b"x", None, "not as stored: \x00\ud800", refused=True)
    with store.session(projection, generation) as session:
        project(session, projection, [refused])
    status = store.status("stats")
    assert (status.rejected, status.dead_letters, status.positions) == (1, 0, {("t", 0): 1})
    table = f"stats_v{generation}._rejected"
    assert store.fetch("SELECT reason FROM {r}", {"r": table}, {}) == [
        {"reason": "not as stored: \\x00\\ud800"}
    ]
    _drop_rejected_table(store, generation)  # as a generation an older version made
    reopened = store.opener()()
    try:
        assert reopened.status("stats").rejected == 0
        with reopened.session(projection, generation) as session:
            project(session, projection, [refused._replace(offset=1)])
        assert reopened.status("stats").rejected == 1
    finally:
        reopened.close()


def _drop_rejected_table(store: ReadModelStore, generation: int) -> None:
    """The generation as an older version made it: no `_rejected`, no count of them."""
    if isinstance(store, PostgresStore):
        with store.pool.connection() as conn:
            conn.execute(f'DROP TABLE "stats_v{generation}"._rejected')
            conn.execute(f'ALTER TABLE "stats_v{generation}"._status DROP COLUMN rejected')
    else:
        assert isinstance(store, SqliteStore)
        with store.lock:
            store.conn.execute(f'DROP TABLE "stats_v{generation}___rejected"')
            store.conn.execute(f'ALTER TABLE "stats_v{generation}___status" DROP COLUMN rejected')


def _labelled(event: Any, rows: Any) -> list[Any]:
    """A row whose indexed label is beyond what a PostgreSQL index entry holds (2,704
    bytes, after compression: random text barely compresses), for every started task."""
    label = base64.b64encode(random.Random(event.originator_id.int).randbytes(12_000)).decode()
    return [Upsert("labels", {"task_id": event.originator_id, "label": label})]


def test_an_event_beyond_a_database_limit_is_a_dead_letter_not_retried_for_good(
    pg_url: str,
) -> None:
    """PostgreSQL reports a value beyond one of its limits (an index entry too large) as an
    `OperationalError`, the class a lost connection raises, so the batch was retried for
    ever and the projection stood still behind one event. It is the event's fault: a dead
    letter, and the events around it apply."""
    labels = table("labels", ("task_id",), "task_id:uuid label:text", indexes=(("label",),))
    projection = DispatchProjection("limits", 1, (labels,))
    projection.on(TaskStarted, keys=no_rows)(_labelled)
    store = PostgresStore(pg_url)
    try:
        generation = store.install(projection)
        items = [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(EVENTS[:600])]
        started = sum(isinstance(item.event, TaskStarted) for item in items)
        outcome = commit(store, projection, generation, items)
        assert outcome.dead == store.status("limits").dead_letters == started > 0
        assert store.status("limits").positions == {("t", 0): len(items)}
    finally:
        store.close()
