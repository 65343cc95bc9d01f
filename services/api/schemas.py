"""Request bodies of the HTTP API: msgspec Structs decoded by Litestar.

Shapes only; every business check (formats, ranges, states) is the domain's, so that
the HTTP API, the CLI and the demo refuse exactly the same things. Absent PATCH fields
are UNSET and mean "unchanged".
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType


class Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def fields(self) -> dict[str, Any]:
        """The given fields as keyword arguments for a domain method (UNSET left out)."""
        return {
            name: value
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not UNSET
        }


# --- customers ------------------------------------------------------------------------


class RegisterCustomer(Body, frozen=True, kw_only=True):
    name: str
    company: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    owner_department: str | None = None
    owner_agent: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    consents: dict[str, bool] = msgspec.field(default_factory=dict)


class UpdateProfile(Body, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    company: str | UnsetType | None = UNSET
    email: str | UnsetType | None = UNSET
    phone: str | UnsetType | None = UNSET
    address: str | UnsetType | None = UNSET


class ChangeOwner(Body, frozen=True, kw_only=True):
    department: str
    agent: str | None = None


class Share(Body, frozen=True, kw_only=True):
    department: str


class AddTag(Body, frozen=True, kw_only=True):
    tag: str


class SetConsents(Body, frozen=True, kw_only=True):
    consents: dict[str, bool]


class RecordOrder(Body, frozen=True, kw_only=True):
    order_id: str
    amount: Decimal
    currency: str
    status: str = "placed"
    ordered_at: datetime | None = None


class ChangeOrderStatus(Body, frozen=True, kw_only=True):
    status: str


class Erase(Body, frozen=True, kw_only=True):
    reason: str | None = None


# --- conversations --------------------------------------------------------------------


class OpenConversation(Body, frozen=True, kw_only=True):
    customer_id: UUID
    channel: str
    subject: str
    department: str | None = None
    agent: str | None = None
    participants: list[str] = msgspec.field(default_factory=list)


class LogMessage(Body, frozen=True, kw_only=True):
    direction: str
    author: str
    content: str
    sent_at: datetime | None = None


class AddNote(Body, frozen=True, kw_only=True):
    content: str


class CorrectMessage(Body, frozen=True, kw_only=True):
    content: str
    reason: str


class HandOff(Body, frozen=True, kw_only=True):
    to_department: str
    to_agent: str | None = None
    note: str | None = None


class Close(Body, frozen=True, kw_only=True):
    outcome: str
    summary: str | None = None


class Reason(Body, frozen=True, kw_only=True):
    reason: str


class Survey(Body, frozen=True, kw_only=True):
    score: int
    comment: str | None = None


# --- tasks ----------------------------------------------------------------------------


class CreateTask(Body, frozen=True, kw_only=True):
    customer_id: UUID
    title: str
    description: str | None = None
    department: str | None = None
    assignee: str | None = None
    due_at: datetime | None = None
    priority: str = "normal"
    conversation_id: UUID | None = None


class PatchTask(Body, frozen=True, kw_only=True):
    title: str | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    priority: str | UnsetType = UNSET
    due_at: datetime | UnsetType | None = UNSET


class Assign(Body, frozen=True, kw_only=True):
    assignee: str
    reason: str | None = None
    department: str | None = None


class Progress(Body, frozen=True, kw_only=True):
    note: str
    percent: int


class Complete(Body, frozen=True, kw_only=True):
    resolution: str


class Evaluate(Body, frozen=True, kw_only=True):
    score: int
    feedback: str | None = None
