"""What an access decision needs of an aggregate: a `Resource` (part of `services.access`).

Decisions never see an aggregate itself: `resource_of` reduces its state at some position
to its kind and id, its owning department, the departments that see it, the customer's
e-mail consent and their erasure. In: an aggregate (or what a read-model row says of one).
Out: a frozen `Resource`. I/O: none.
"""

from __future__ import annotations

from uuid import UUID

import msgspec

from domain.base import Aggregate
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task

EMAIL_CONSENT = "email_marketing"


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """What access decisions need of an aggregate (or a read-model row) at a position."""

    kind: str  # "customer" | "conversation" | "task"
    id: UUID
    owner: str  # the owning department (a conversation's or task's handling department)
    departments: frozenset[str]  # every department that sees it (owner plus shared-with)
    email_consent: bool = False
    erased: bool = False


def resource_of(aggregate: Aggregate, *, erased: bool = False) -> Resource:
    """The resource an aggregate's current state describes; `erased`: its customer's
    erasure, for conversations and tasks (their own state does not know it)."""
    if isinstance(aggregate, Customer):
        return Resource(
            kind="customer",
            id=aggregate.id,
            owner=aggregate.owner_department,
            departments=aggregate.departments,
            email_consent=aggregate.consents.get(EMAIL_CONSENT, False),
            erased=aggregate.erased,
        )
    if isinstance(aggregate, Conversation | Task):
        department = aggregate.department
        return Resource(
            kind=aggregate.aggregate_type,
            id=aggregate.id,
            owner=department,
            departments=frozenset((department,)),
            erased=erased,
        )
    raise TypeError(f"no access rules for {type(aggregate).__name__}")
