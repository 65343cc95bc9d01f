"""Builders for domain tests: contexts, a registered customer, and codec replay.

Replaying through `CodecMapper` (encode to a stored event, decode, `mutate`) is the
property every aggregate must satisfy: the stored history rebuilds the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.base import Aggregate, Context, DomainEvent
from domain.codec import CodecMapper
from domain.conversation import Conversation
from domain.customer import Customer

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
CUSTOMER_ID = UUID("00000000-0000-4000-8000-000000000001")
CONVERSATION_ID = UUID("00000000-0000-4000-8000-000000000002")
TASK_ID = UUID("00000000-0000-4000-8000-000000000003")


def ctx(
    actor: str = "agent-1",
    department: str = "sales",
    at: datetime | None = None,
    minutes: int = 0,
) -> Context:
    """A command context at T0 (+ minutes) unless `at` is given."""
    return Context(
        actor=actor,
        actor_department=department,
        occurred_at=at or T0 + timedelta(minutes=minutes),
        correlation_id="corr-1",
        causation_id=None,
    )


def customer(customer_id: UUID = CUSTOMER_ID) -> Customer:
    return Customer.register(
        ctx(),
        customer_id=customer_id,
        name="Ada Lovelace",
        email="ada@example.com",
        owner_department="sales",
    )


def new_conversation(**given: Any) -> Conversation:
    """A chat about `customer()`, opened at T0; `given` adds to or overrides its fields."""
    fields: dict[str, Any] = {"channel": "chat", "subject": "s"} | given
    return Conversation.open(ctx(), conversation_id=CONVERSATION_ID, customer=customer(), **fields)


def replay(events: Iterable[DomainEvent], mapper: CodecMapper | None = None) -> Aggregate | None:
    """State rebuilt from `events` after a round trip through the stored form."""
    mapper = mapper or CodecMapper()
    aggregate: Aggregate | None = None
    for event in events:
        stored = mapper.to_stored_event(event)
        aggregate = mapper.to_domain_event(stored).mutate(aggregate)
    return aggregate


def emitted(aggregate: Aggregate) -> list[str]:
    """Wire names of the events pending on `aggregate` (and clears them)."""
    return [event.wire_name() for event in aggregate.collect_events()]


def exactly(aggregate: Aggregate) -> dict[str, Any]:
    """Every attribute but the pending events, each dict's items in their order (answers
    list a customer's orders and a conversation's messages in that order)."""
    return {
        name: list(value.items()) if isinstance(value, dict) else value
        for name, value in vars(aggregate).items()
        if name != "_pending"
    }
