"""What reads answer: aggregate state and event history as response Structs, masked.

Every view passes through `services.access.fields.mask`, applied to the personal fields the
domain declares (`personal_fields` of the aggregate, or of the event for history) with
the caller's `FieldAccess`, before it becomes a typed Struct, so the OpenAPI schema
stays typed while hidden fields read as `[masked]`; a sealed aggregate's other personal
fields are opened there, so nothing the caller may not see is ever opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from domain.base import DomainEvent
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from services.access.fields import FieldAccess, mask

V = TypeVar("V", bound=msgspec.Struct)


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    amount: Decimal
    currency: str
    status: str
    ordered_at: datetime
    updated_at: datetime


class CustomerView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    version: int
    name: str
    company: str | None
    email: str | None
    phone: str | None
    address: str | None
    owner_department: str
    owner_agent: str | None
    shared_with: list[str]
    tags: list[str]
    consents: dict[str, bool]
    orders: list[OrderView]
    archived: bool
    erased: bool
    created_on: datetime | None
    modified_on: datetime | None


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    kind: str
    direction: str | None
    author: str
    content: str
    sent_at: datetime
    corrected: bool
    retracted: bool
    reason: str | None


class ConversationView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    version: int
    customer_id: UUID | None
    channel: str
    subject: str
    department: str
    agent: str | None
    participants: list[str]
    status: str
    messages: list[MessageView]
    handoffs: int
    outcome: str | None
    summary: str | None
    opened_at: datetime | None
    closed_at: datetime | None
    last_csat: int | None
    last_nps: int | None


class TaskView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    version: int
    customer_id: UUID | None
    conversation_id: UUID | None
    title: str
    description: str | None
    department: str
    assignee: str | None
    due_at: datetime | None
    priority: str
    status: str
    progress: int
    resolution: str | None
    on_time: bool | None
    evaluation_score: int | None
    reassignments: int


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    version: int
    occurred_at: datetime
    actor: str
    actor_department: str
    correlation_id: str
    causation_id: str | None
    data: dict[str, Any]
    idempotency_key: str | None = None


def _view(
    aggregate: Any,
    view: type[V],
    personal: Iterable[str],
    access: FieldAccess,
    opener: Callable[[str], str] | None = None,
    **overrides: Any,
) -> V:
    """`view` of `aggregate`'s attributes (or `overrides`), its personal paths masked
    where `access` hides them and, with `opener`, opened where it does not."""
    values = {name: getattr(aggregate, name, None) for name in view.__struct_fields__}
    document = mask(values | overrides, personal, access, opener)
    return msgspec.convert(document, view, from_attributes=True, strict=False)


def customer_view(customer: Customer, access: FieldAccess) -> CustomerView:
    """Of a customer whose fields `access` shows are open (`CurrentState.opened`)."""
    return _view(
        customer,
        CustomerView,
        Customer.personal_fields,
        access,
        shared_with=sorted(customer.shared_with),
        tags=sorted(customer.tags),
        orders=list(customer.orders.values()),  # no personal data: converted as they are
    )


def conversation_view(
    conversation: Conversation, access: FieldAccess, opener: Callable[[str], str] | None
) -> ConversationView:
    """`opener` opens the fields of a sealed conversation (`CurrentState.load`); None:
    they are open already."""
    return _view(
        conversation,
        ConversationView,
        Conversation.personal_fields,
        access,
        opener,
        participants=list(conversation.participants),
        messages=[msgspec.to_builtins(m) for m in conversation.messages.values()],
    )


def task_view(task: Task, access: FieldAccess, opener: Callable[[str], str] | None) -> TaskView:
    """`opener` opens the fields of a sealed task (`CurrentState.load`); None: they are
    open already."""
    return _view(task, TaskView, Task.personal_fields, access, opener)


_METADATA = frozenset(
    {"originator_id", "originator_version", "occurred_at", "actor", "actor_department"}
    | {"correlation_id", "causation_id", "idempotency_key"}
)


def history_entry(event: DomainEvent, access: FieldAccess) -> HistoryEntry:
    data = msgspec.to_builtins(event)
    return HistoryEntry(
        type=event.wire_name(),
        version=event.originator_version,
        occurred_at=event.occurred_at,
        actor=event.actor,
        actor_department=event.actor_department,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        idempotency_key=event.idempotency_key or None,
        data=mask(
            {k: v for k, v in data.items() if k not in _METADATA and k != "type"},
            event.personal_fields,
            access,
        ),
    )
