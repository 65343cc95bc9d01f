"""The Idempotency-Key in event metadata: carried from the command's Context into every
event it emits and through the codec, absent (not null) from events without one, and
never shown as event data (timeline details, history `data`)."""

from __future__ import annotations

import json

import msgspec
from eventsourcing.persistence import StoredEvent

from domain.base import Context, DomainEvent
from domain.codec import CodecMapper
from domain.customer import Customer
from domain.task import Task
from projections import PROJECTIONS
from services.access.fields import EVERYTHING_VISIBLE
from services.api.views import history_entry
from tests.unit.domain.factories import CUSTOMER_ID, T0, TASK_ID
from tests.unit.projections.memory import replay


def keyed(key: str | None) -> Context:
    return Context(
        actor="ann",
        actor_department="sales",
        occurred_at=T0,
        correlation_id="c",
        idempotency_key=key,
    )


def customer_events(key: str | None) -> list[DomainEvent]:
    customer = Customer.register(
        keyed(key), customer_id=CUSTOMER_ID, name="Ada", owner_department="sales"
    )
    customer.tag(keyed(key), "vip")
    return customer.collect_events()


def task_events(key: str | None) -> list[DomainEvent]:
    (registered, _) = customer_events(None)
    customer = registered.mutate(None)
    assert isinstance(customer, Customer)
    task = Task.create(keyed(key), task_id=TASK_ID, customer=customer, title="Call back")
    task.assign(keyed(key), assignee="bob", reason="on call")
    return [registered, *task.collect_events()]


def stored_round_trip(event: DomainEvent) -> tuple[StoredEvent, DomainEvent]:
    mapper = CodecMapper()
    stored = mapper.to_stored_event(event)
    return stored, mapper.to_domain_event(stored)


def test_every_event_of_a_keyed_command_carries_the_key_through_the_codec() -> None:
    for event in customer_events("order-42"):
        stored, decoded = stored_round_trip(event)
        assert json.loads(stored.state)["idempotency_key"] == "order-42"
        assert decoded.idempotency_key == "order-42"


def test_an_event_without_a_key_stores_no_key_field_at_all() -> None:
    for event in customer_events(None):
        stored, decoded = stored_round_trip(event)
        assert "idempotency_key" not in json.loads(stored.state)
        assert decoded.idempotency_key is msgspec.UNSET


def test_the_key_is_metadata_not_data_in_timeline_and_history() -> None:
    plain, stamped = task_events(None), task_events("order-42")
    timeline = [replay(PROJECTIONS["shared"], e).sorted_rows("timeline") for e in (plain, stamped)]
    assert len(timeline[1]) == 2
    assert timeline[0] == timeline[1]
    entry = history_entry(stamped[1], EVERYTHING_VISIBLE)
    assert entry.idempotency_key == "order-42"
    assert "idempotency_key" not in entry.data
    assert history_entry(plain[1], EVERYTHING_VISIBLE).idempotency_key is None
