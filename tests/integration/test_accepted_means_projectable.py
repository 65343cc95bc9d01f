"""Accepted means projectable, and read models say what the domain says, on both stores.

Random command sequences with extreme but valid values (`tests/unit/projections/world`:
the edges of every bound in `domain.validation`, astral-plane text, every zone offset,
years 1 to 9999) run through the domain; every event it accepts goes the whole way: the
event store (sealed, stored in PostgreSQL), the relay's CloudEvents envelope and the
runner's decoding (with its check against the event store, `consumers.as_stored`), then
every projection on SQLite and on PostgreSQL. None may become a dead letter, every
read-model query must answer, and every row that mirrors an aggregate must equal what
the aggregate's state says (`tests/unit/projections/oracle`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import uuid4

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.databases import fresh_database
from consumers import readmodel_queries as rq
from consumers import stats_queries as sq
from consumers.batch_commit import commit
from consumers.hand_over import decode
from consumers.kafka_records import Record
from consumers.key_stores import SqliteKeyStore
from consumers.keyring import Keyring
from consumers.projecting import Item
from consumers.readmodel_store import ReadModelStore
from consumers.relay import encode_notification
from consumers.sealed_rows import open_rows
from consumers.store_postgres import PostgresStore
from consumers.store_sqlite import SqliteStore
from domain.base import DomainEvent
from projections import PROJECTIONS
from tests.integration.projection_support import EventLog, event_log
from tests.unit.projections.oracle import mismatches
from tests.unit.projections.world import Step, World, steps

# The event store's and the stores' connection pools make connections on threads of their
# own, and psycopg_pool dates each one's expiry with the global `random`: Hypothesis takes
# a change of that state while it draws for a strategy that uses `random`, and fails the
# example while describing it (reproduced with a thread calling `random.random()` beside a
# draw). The strategies are `tests/unit/projections/world`'s, checked for that in the
# unit tests, where no pool runs.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
    ),
]

EXAMPLES = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Stores:
    """Both read-model stores, the event store and a keyring, for every example of a
    test."""

    all: list[ReadModelStore]
    keyring: Keyring
    log: EventLog


@pytest.fixture(scope="module")
def stores(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    root = tmp_path_factory.mktemp("projectable")
    with fresh_database(server_url, prefix="crm_test") as url, ExitStack() as opened:
        sqlite = opened.enter_context(closing(SqliteStore(root / "readmodels.db")))
        postgres = opened.enter_context(closing(PostgresStore(url)))
        keyring = Keyring(SqliteKeyStore(root / "keys.db"))
        log = opened.enter_context(event_log(url, keyring))
        yield Stores([sqlite, postgres], keyring, log)


def through_the_wire(events: list[DomainEvent], stores: Stores) -> list[Any]:
    """The events as a projection receives them: sealed and stored in the event store,
    enveloped as CloudEvents by the relay, and checked, decoded and opened by the
    runner; `(name, items)` per projection."""
    topic = f"t{uuid4().hex}"
    records = [
        Record(topic, 0, number, None, encode_notification(notification, "")[2])
        for number, notification in enumerate(stores.log.store(events))
    ]
    return [
        (name, decode(records, stores.keyring, stores.log.stored, p.personal_inputs))
        for name, p in PROJECTIONS.items()
    ]


def apply_everywhere(stores: Stores, plan: list[Step], batch: int) -> World:
    """Play `plan` and apply what the domain accepted to every projection on both stores;
    no event may become a dead letter."""
    world = World(as_stored_now=True)  # a real event store refuses the rest
    wired = through_the_wire(world.play(plan), stores)
    for store in stores.all:
        for name, items in wired:
            projection, dead = PROJECTIONS[name], store.status(name).dead_letters
            generation = store.install(projection)
            for start in range(0, len(items), batch):
                chunk: list[Item] = items[start : start + batch]
                assert commit(store, projection, generation, chunk).dead == 0, name
            assert store.status(name).dead_letters == dead, (store.dialect, name)
    return world


@EXAMPLES
@given(plan=steps(), batch=st.integers(1, 40))
def test_every_accepted_event_applies_and_every_query_answers(
    stores: Stores, plan: list[Step], batch: int
) -> None:
    world = apply_everywhere(stores, plan, batch)
    for store in stores.all:
        answers = queries(store, world)
        assert msgspec.json.encode(answers)  # what the API serves encodes as JSON


def queries(store: ReadModelStore, world: World) -> list[Any]:
    departments = {c.owner_department for c in world.customers} | {"sales"}
    answers: list[Any] = []
    for department in sorted(departments):
        answers += rq.department_customers(store, department, limit=500)
        answers += rq.department_conversations(store, department, limit=500)
        answers += rq.department_tasks(store, department, datetime.now(UTC), limit=500)
        answers += sq.satisfaction_stats(store, department=department, granularity="week")
        answers.append(sq.task_stats(store, department=department))
    for customer in world.customers:
        answers += rq.timeline(store, customer.id, limit=500)
        answers.append(rq.customer_360(store, customer.id))
        answers.append(rq.sales_open_tasks(store, customer.id))
    return answers


@EXAMPLES
@given(plan=steps(), batch=st.integers(1, 40))
def test_read_model_rows_equal_the_aggregates_state_on_both_stores(
    stores: Stores, plan: list[Step], batch: int
) -> None:
    world = apply_everywhere(stores, plan, batch)
    for store in stores.all:
        assert mismatches(world, partial(opened, store, stores.keyring)) == [], store.dialect


def opened(store: ReadModelStore, keyring: Keyring, name: str, table: str) -> list[dict[str, Any]]:
    """A table's rows with their personal columns opened (read models store them sealed)."""
    generation = store.live_generation(name)
    assert generation is not None
    spec = next(t for t in PROJECTIONS[name].tables if t.name == table)
    rows = store.dump(name, generation, spec)
    if spec.subject is not None:
        open_rows(keyring, [(row, spec.personal) for row in rows], spec.subject)
    return rows
