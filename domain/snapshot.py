"""An aggregate's state at a version, written down so that a long history need not be
read whole: a reader starts from the newest snapshot and applies only the later events.

A customer's history has no bound; a conversation may hold 25,000 events and a task
5,000 (`max_events`), and neither is kept between reads, so each read of a long one
replayed it all. The states are bounded (a customer's `MAX_TAGS`, `MAX_CONSENTS` and
`MAX_ORDERS`; a conversation's `CONVERSATION_TEXT`), and so are their snapshots. A
snapshot holds the state as a load from the store gives it: personal fields sealed, as
the events hold them, so it holds no plaintext, and erasing the customer's key leaves it
as unreadable as the events.

A snapshot is a cache of what the events say, never a source of truth: the events stay
the record, and a snapshot whose tag differs from this code's (`TAGS`) is ignored (the
history is read instead). The tag changes by itself with the state's shape (a digest of
its struct's schema); bump `FORMAT` by hand when an applier's meaning changes without a
field changing. Each state struct names every attribute of its aggregate but the pending
events, a private one without its underscore (a unit test checks them).

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, TypeVar
from uuid import UUID

import msgspec

from domain.base import Aggregate, AwareDatetime
from domain.conversation import Conversation
from domain.conversation_messages import Message
from domain.customer import Customer
from domain.customer_orders import Order
from domain.task import Status, Task

FORMAT = 2
"""Bumped by hand when applying an event gives a different state than before (2: a
retracted message keeps neither its text nor its author)."""

A = TypeVar("A", bound=Aggregate)


class _State(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    version: int
    created_on: AwareDatetime | None
    modified_on: AwareDatetime | None


class CustomerState(_State, frozen=True, kw_only=True):
    """Every attribute of a `Customer`'s state, as it holds them."""

    name: str
    company: str | None
    email: str | None
    phone: str | None
    address: str | None
    owner_department: str
    owner_agent: str | None
    shared_with: set[str]
    tags: set[str]
    consents: dict[str, bool]
    orders: dict[str, Order]
    archived: bool
    erased: bool


class ConversationState(_State, frozen=True, kw_only=True):
    """Every attribute of a `Conversation`'s state, as it holds them."""

    customer_id: UUID | None
    channel: str
    subject: str
    department: str
    agent: str | None
    participants: tuple[str, ...]
    status: Literal["open", "closed"]
    messages: dict[str, Message]
    text_logged: int
    handoffs: int
    outcome: str | None
    summary: str | None
    opened_at: AwareDatetime | None
    closed_at: AwareDatetime | None
    closings: int
    csat_given: bool
    nps_given: bool
    last_csat: int | None
    last_nps: int | None


class TaskState(_State, frozen=True, kw_only=True):
    """Every attribute of a `Task`'s state, as it holds them."""

    customer_id: UUID | None
    conversation_id: UUID | None
    title: str
    description: str | None
    department: str
    assignee: str | None
    due_at: AwareDatetime | None
    priority: str
    status: Status
    progress: int
    created_at: AwareDatetime | None
    started_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    resolution: str | None
    on_time: bool | None
    evaluation_score: int | None
    evaluated: bool
    reassignments: int
    late_due_setter: str | None


STATES: dict[type[Aggregate], type[_State]] = {
    Customer: CustomerState,
    Conversation: ConversationState,
    Task: TaskState,
}


def tag_of(kind: type[Aggregate], state: type[msgspec.Struct]) -> str:
    """The tag of `kind`'s snapshots in the shape of `state`: its aggregate type,
    `FORMAT` and a digest of the struct's schema."""
    schema = msgspec.json.encode(msgspec.json.schema(state), order="sorted")
    return f"{kind.aggregate_type}.v{FORMAT}.{hashlib.sha256(schema).hexdigest()[:16]}"


TAGS: dict[type[Aggregate], str] = {kind: tag_of(kind, state) for kind, state in STATES.items()}
"""Names the shape each kind's snapshots are written in here (see the module's docstring)."""

_ENCODER = msgspec.json.Encoder()  # dicts in their order: answers list orders, messages so
_DECODERS = {kind: msgspec.json.Decoder(state) for kind, state in STATES.items()}


def snapshot(aggregate: Aggregate) -> bytes:
    """The aggregate's state, encoded (its tag is `TAGS[type(aggregate)]`)."""
    fields = {name.lstrip("_"): value for name, value in vars(aggregate).items()}
    del fields["pending"]
    return _ENCODER.encode(STATES[type(aggregate)](**fields))


def restored(kind: type[A], state: bytes) -> A:
    """The `kind` aggregate a `snapshot` was taken of, with no pending events."""
    aggregate = kind.blank(UUID(int=0))
    values = msgspec.structs.asdict(_DECODERS[kind].decode(state))
    attributes: dict[str, Any] = vars(aggregate)
    for name in list(attributes):
        if name != "_pending":
            attributes[name] = values[name.lstrip("_")]
    return aggregate
