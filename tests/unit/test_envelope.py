"""The Kafka wire contract: every CloudEvents attribute, the id format, round trips."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from uuid import UUID, uuid4

import msgspec
import pytest

from consumers import envelope
from domain import codec
from domain.base import Context
from domain.customer import Customer, CustomerRegistered, CustomerTagged

WHEN = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def _ctx(causation: str | None = None) -> Context:
    return Context(
        actor="agent-7",
        actor_department="sales",
        occurred_at=WHEN,
        correlation_id="corr-1",
        causation_id=causation,
    )


def _registered(customer_id: UUID) -> CustomerRegistered:
    customer = Customer.register(
        _ctx(),
        customer_id=customer_id,
        name="Ada",
        email="ada@example.com",
        owner_department="sales",
    )
    event = customer.collect_events()[0]
    assert isinstance(event, CustomerRegistered)
    return event


def test_every_attribute_is_present() -> None:
    customer_id = uuid4()
    value = envelope.to_cloudevent(_registered(customer_id), position=42)
    attrs = json.loads(value)
    assert attrs["specversion"] == "1.0"
    assert attrs["id"] == f"{customer_id}/1"
    assert attrs["source"] == "crm-collab"
    assert attrs["type"] == "CustomerRegistered"
    assert attrs["subject"] == str(customer_id)
    assert datetime.fromisoformat(attrs["time"]) == WHEN
    assert attrs["datacontenttype"] == "application/json"
    assert attrs["aggregatetype"] == "customer"
    assert attrs["aggregateversion"] == 1
    assert attrs["position"] == 42
    assert attrs["schemaversion"] == CustomerRegistered.class_version
    assert attrs["actor"] == "agent-7"
    assert attrs["actordepartment"] == "sales"
    assert attrs["correlationid"] == "corr-1"
    assert "causationid" not in attrs  # null attributes are omitted (CloudEvents 1.0)
    assert attrs["data"]["type"] == "CustomerRegistered"
    assert attrs["data"]["name"] == "Ada"


def test_causation_id_is_published_when_present() -> None:
    customer = Customer.register(
        _ctx("cause-9"), customer_id=uuid4(), name="Bo", owner_department="support"
    )
    attrs = json.loads(envelope.to_cloudevent(customer.collect_events()[0], position=1))
    assert attrs["causationid"] == "cause-9"


def test_round_trip_gives_the_same_event_and_position() -> None:
    customer = Customer.register(_ctx(), customer_id=uuid4(), name="Cy", owner_department="sales")
    customer.tag(_ctx(), "vip")
    for position, event in enumerate(customer.collect_events(), start=7):
        decoded, got_position = envelope.from_cloudevent(envelope.to_cloudevent(event, position))
        assert decoded == event
        assert got_position == position
    assert isinstance(decoded, CustomerTagged)


def test_stored_bytes_are_embedded_unchanged() -> None:
    event = _registered(uuid4())
    stored = codec.encode(event)
    value = envelope.to_cloudevent(event, position=3, data=stored)
    raw = msgspec.json.decode(value, type=dict[str, msgspec.Raw])["data"]
    assert bytes(raw) == stored


def test_naive_time_is_published_as_utc() -> None:
    event = msgspec.structs.replace(_registered(uuid4()), occurred_at=WHEN.replace(tzinfo=None))
    attrs = json.loads(envelope.to_cloudevent(event, position=1))
    assert datetime.fromisoformat(attrs["time"]) == WHEN


def test_topic_names() -> None:
    assert envelope.topic_name("task", "t1.") == "t1.crm.task.v1"
    assert envelope.all_topics() == ["crm.customer.v1", "crm.conversation.v1", "crm.task.v1"]
    assert tuple(envelope.all_topics()) == envelope.TOPICS


@pytest.mark.parametrize(
    "value", [b"not json", b"{}", b'{"specversion": "0.3"}'], ids=["garbage", "empty", "old"]
)
def test_foreign_records_are_rejected(value: bytes) -> None:
    with pytest.raises(envelope.InvalidEnvelope):
        envelope.from_cloudevent(value)


def test_unknown_type_is_rejected() -> None:
    attrs = json.loads(envelope.to_cloudevent(_registered(uuid4()), position=1))
    attrs["type"] = "NoSuchEvent"
    with pytest.raises(codec.UnknownEventType):
        envelope.from_cloudevent(json.dumps(attrs).encode())


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (b"", "no value (empty, or null: a tombstone)"),
        (b'{"specversion": "\xff"}', "'utf-8' codec can't decode byte 0xff"),
    ],
    ids=["tombstone", "not-utf8"],
)
def test_an_empty_or_non_utf8_value_is_no_cloudevent(value: bytes, said: str) -> None:
    """Both readers of envelopes raise `InvalidEnvelope` alone (the audit's catches no
    other): msgspec raises `UnicodeDecodeError` for a string that is not UTF-8."""
    for read in (envelope.read_cloudevent, envelope.delivered):
        with pytest.raises(envelope.InvalidEnvelope, match=re.escape(said)):
            read(value)
