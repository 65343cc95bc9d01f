"""Customer use cases: one command class each, with its policy action and its decision.

I/O: none (`CommandService` loads, authorises and saves).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain import fields as f
from domain.base import Aggregate, Context
from domain.customer import Customer
from services.access.rules import Principal
from services.command_base import Change, Creation, Existing
from services.sealed_state import Path


class RegisterCustomer(Creation, frozen=True, kw_only=True):
    """A new customer; `owner_department` defaults to the caller's department."""

    action: ClassVar[str] = "customer.create"
    department_fields: ClassVar[tuple[str, ...]] = ("owner_department",)
    name: f.Line
    company: f.Line | None = None
    email: f.EmailText | None = None
    phone: f.PhoneText | None = None
    address: f.Address | None = None
    owner_department: f.Code | None = None
    owner_agent: f.PersonName | None = None
    tags: f.Tags = msgspec.field(default_factory=list)
    consents: f.Consents = msgspec.field(default_factory=dict)

    def with_defaults(self, principal: Principal) -> Self:
        if self.owner_department is not None:
            return self
        return msgspec.structs.replace(self, owner_department=principal.department)

    def create(self, ctx: Context, new_id: UUID, existing: Existing) -> Aggregate:
        fields: dict[str, Any] = self.fields()
        return Customer.register(ctx, customer_id=new_id, **fields)


class CustomerChange(Change[Customer], frozen=True, kw_only=True):
    @classmethod
    def aggregate_class(cls) -> type[Customer]:
        return Customer


class UpdateProfile(CustomerChange, frozen=True, kw_only=True):
    """Only the fields given change; a field given as null is cleared."""

    action: ClassVar[str] = "customer.update"
    name: f.Line | UnsetType = UNSET
    company: f.Line | UnsetType | None = UNSET
    email: f.EmailText | UnsetType | None = UNSET
    phone: f.PhoneText | UnsetType | None = UNSET
    address: f.Address | UnsetType | None = UNSET

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.update_profile(ctx, **self.fields())

    def compares(self) -> tuple[Path, ...]:
        """Those of its personal fields given: a value equal to the current one changes
        nothing."""
        return tuple((f,) for f in Customer.personal_fields if getattr(self, f, UNSET) is not UNSET)


class ChangeOwner(CustomerChange, frozen=True, kw_only=True):
    """Only the owning department (or a service or admin) hands a customer over."""

    action: ClassVar[str] = "customer.owner"
    department_fields: ClassVar[tuple[str, ...]] = ("department",)
    department: f.Code
    agent: f.PersonName | None = None

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.change_owner(ctx, department=self.department, agent=self.agent)


class ShareCustomer(CustomerChange, frozen=True, kw_only=True):
    action: ClassVar[str] = "customer.share"
    department_fields: ClassVar[tuple[str, ...]] = ("department",)
    department: f.Code

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.share_with(ctx, self.department)


class UnshareCustomer(CustomerChange, frozen=True, kw_only=True):
    action: ClassVar[str] = "customer.share"
    department_fields: ClassVar[tuple[str, ...]] = ("department",)
    department: f.Code

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.unshare(ctx, self.department)


class TagCustomer(CustomerChange, frozen=True, kw_only=True):
    action: ClassVar[str] = "customer.update"
    tag: f.TagName

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.tag(ctx, self.tag)


class UntagCustomer(CustomerChange, frozen=True, kw_only=True):
    action: ClassVar[str] = "customer.update"
    tag: f.TagName

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.untag(ctx, self.tag)


class SetConsents(CustomerChange, frozen=True, kw_only=True):
    """Grant or withdraw consents; never one that widens what its own caller sees."""

    action: ClassVar[str] = "customer.update"
    consents: f.Consents

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        for consent, granted in sorted(self.consents.items()):
            aggregate.set_consent(ctx, consent, granted)


class RecordOrder(CustomerChange, frozen=True, kw_only=True):
    action: ClassVar[str] = "customer.order"
    order_id: f.PathId
    amount: f.Amount
    currency: f.Currency
    status: f.Code = "placed"
    ordered_at: f.Instant | None = None

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.record_order(ctx, **self.fields())


class ChangeOrderStatus(CustomerChange, frozen=True, kw_only=True):
    """`order_id` names an order recorded earlier, perhaps before `PathId` was its rule."""

    action: ClassVar[str] = "customer.order"
    order_id: f.RecordedId
    status: f.Code

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.change_order_status(ctx, self.order_id, self.status)


class ArchiveCustomer(CustomerChange, frozen=True, kw_only=True):
    """Soft delete by the owning department: gone from department views, history kept."""

    action: ClassVar[str] = "customer.archive"
    reason: f.Line | None = None

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.archive(ctx, self.reason)


class EraseCustomer(CustomerChange, frozen=True, kw_only=True):
    """Right to be forgotten (admins): the event, then the customer's key is destroyed."""

    action: ClassVar[str] = "customer.erase"
    reason: f.Line | None = None

    def decide(self, aggregate: Customer, ctx: Context) -> None:
        aggregate.erase(ctx, self.reason)
