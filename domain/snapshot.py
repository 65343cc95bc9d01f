"""A customer's state at a version, written down so that a long history need not be
read whole: a reader starts from the newest snapshot and applies only the later events.

Only customers are snapshotted: theirs are the only histories without a bound
(conversations and tasks hold at most `max_events`), while a customer's state is bounded
(`MAX_TAGS`, `MAX_CONSENTS`, `MAX_ORDERS`). A snapshot holds the state as a load from
the store gives it: personal fields sealed, as the events hold them, so it holds no
plaintext, and erasing the customer's key leaves it as unreadable as the events.

A snapshot is a cache of what the events say, never a source of truth: the events stay
the record, and a snapshot whose `TAG` differs from this code's is ignored (the history
is read instead). The tag changes by itself with the state's shape (a digest of
`CustomerState`'s schema); bump `FORMAT` by hand when an applier's meaning changes
without a field changing. `CustomerState` must name every attribute of the state
(a unit test checks it against `Customer`).

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

import msgspec

from domain.base import AwareDatetime
from domain.customer import Customer, Order

FORMAT = 1
"""Bumped by hand when applying an event gives a different state than before."""


class CustomerState(msgspec.Struct, frozen=True, kw_only=True):
    """Every attribute of a `Customer`'s state, as it holds them."""

    id: UUID
    version: int
    created_on: AwareDatetime | None
    modified_on: AwareDatetime | None
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


def tag_of(state: type[msgspec.Struct]) -> str:
    """The tag of snapshots in the shape of `state`: `FORMAT` and a digest of its schema."""
    schema = msgspec.json.encode(msgspec.json.schema(state), order="sorted")
    return f"customer.v{FORMAT}.{hashlib.sha256(schema).hexdigest()[:16]}"


TAG = tag_of(CustomerState)
"""Names the shape snapshots are written in here (see the module's docstring)."""

_ENCODER = msgspec.json.Encoder()  # dicts in their order: a customer's orders are listed so
_DECODER = msgspec.json.Decoder(CustomerState)


def snapshot(customer: Customer) -> bytes:
    """The customer's state, encoded (its tag is `TAG`)."""
    return _ENCODER.encode(CustomerState(**customer.state()))


def restored(state: bytes) -> Customer:
    """The customer a `snapshot` was taken of, with no pending events."""
    customer = Customer.blank(UUID(int=0))
    vars(customer).update(msgspec.structs.asdict(_DECODER.decode(state)))
    return customer
