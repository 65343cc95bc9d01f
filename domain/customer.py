"""The Customer aggregate: the one shared record sales, support and marketing work on.

Order: events, errors, state, decisions, apply. Archived customers keep their history
but take no new work; erased customers accept no command at all and their personal
fields read as `ERASED` (the codec destroys them on the wire by crypto-shredding).
What the profile, tags and consents accept is in `domain.customer_fields`, the orders
held and what a new one accepts in `domain.customer_orders`.
"""

from __future__ import annotations

import sys
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Self
from uuid import UUID

import msgspec

from domain import customer_fields as accepted
from domain import fields as bound
from domain import validation as check
from domain.base import (
    ERASED,
    HELD_ENTRY,
    Aggregate,
    AwareDatetime,
    Context,
    DomainEvent,
    EventAppliers,
    InvalidTransition,
    ValidationFailed,
)
from domain.customer_fields import PROFILE_FIELDS
from domain.customer_orders import Order, new_order

# --- events ---------------------------------------------------------------------------


class CustomerEvent(DomainEvent, frozen=True, kw_only=True, tag=False):
    """Base of Customer events (untagged: never on the wire by itself)."""

    aggregate_type: ClassVar[str] = "customer"


class CustomerRegistered(CustomerEvent, frozen=True, kw_only=True, tag="CustomerRegistered"):
    name: str
    company: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    owner_department: str
    owner_agent: str | None = None
    tags: tuple[str, ...] = ()
    consents: dict[str, bool] = msgspec.field(default_factory=dict)
    personal_fields: ClassVar[tuple[str, ...]] = ("name", "email", "phone", "address")


class CustomerProfileUpdated(
    CustomerEvent, frozen=True, kw_only=True, tag="CustomerProfileUpdated"
):
    """Only the changed fields are present; absent (UNSET) means unchanged."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    company: str | msgspec.UnsetType | None = msgspec.UNSET
    email: str | msgspec.UnsetType | None = msgspec.UNSET
    phone: str | msgspec.UnsetType | None = msgspec.UNSET
    address: str | msgspec.UnsetType | None = msgspec.UNSET
    personal_fields: ClassVar[tuple[str, ...]] = ("name", "email", "phone", "address")


class CustomerOwnerChanged(CustomerEvent, frozen=True, kw_only=True, tag="CustomerOwnerChanged"):
    from_department: str
    from_agent: str | None = None
    to_department: str
    to_agent: str | None = None


class CustomerShared(CustomerEvent, frozen=True, kw_only=True, tag="CustomerShared"):
    department: str


class CustomerUnshared(CustomerEvent, frozen=True, kw_only=True, tag="CustomerUnshared"):
    department: str


class CustomerTagged(CustomerEvent, frozen=True, kw_only=True, tag="CustomerTagged"):
    tag: str


class CustomerUntagged(CustomerEvent, frozen=True, kw_only=True, tag="CustomerUntagged"):
    tag: str


class CustomerConsentChanged(
    CustomerEvent, frozen=True, kw_only=True, tag="CustomerConsentChanged"
):
    consent: str
    granted: bool


class OrderRecorded(CustomerEvent, frozen=True, kw_only=True, tag="OrderRecorded"):
    order_id: str
    amount: Decimal
    currency: str
    status: str
    ordered_at: AwareDatetime


class OrderStatusChanged(CustomerEvent, frozen=True, kw_only=True, tag="OrderStatusChanged"):
    order_id: str
    from_status: str
    to_status: str


class CustomerArchived(CustomerEvent, frozen=True, kw_only=True, tag="CustomerArchived"):
    """Version 2: `reason` became personal (free text about the customer, as a task's)."""

    reason: str | None = None
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("reason",)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Same shape: a v1 reason is plaintext, which opening passes through unchanged."""


class CustomerErased(CustomerEvent, frozen=True, kw_only=True, tag="CustomerErased"):
    """Version 2: `reason` became personal, as for `CustomerArchived`. It is sealed with
    the key the erasure then destroys, so it reads as `ERASED` to everyone: who erased
    the customer and when stay readable, and free text about them does not outlive them."""

    reason: str | None = None
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("reason",)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Same shape: a v1 reason is plaintext, which opening passes through unchanged."""


# --- errors ---------------------------------------------------------------------------


class CustomerErasedError(InvalidTransition):
    """The customer was erased: nothing may be recorded about them any more."""


class CustomerArchivedError(InvalidTransition):
    """The customer was archived: no new work may start on them."""


class CustomerFullError(InvalidTransition):
    """The customer holds the most tags, consents or orders one may (`MAX_TAGS`,
    `MAX_CONSENTS`, `MAX_ORDERS`): every read of a customer carries them all, and so
    does every process keeping it, so one client adding them in a loop could otherwise
    make each read cost megabytes."""


# --- state ----------------------------------------------------------------------------

_when: EventAppliers[Customer] = EventAppliers()


class Customer(Aggregate):
    aggregate_type: ClassVar[str] = "customer"
    personal_fields: ClassVar[tuple[str, ...]] = ("name", "email", "phone", "address")

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.name: str = ""
        self.company: str | None = None
        self.email: str | None = None
        self.phone: str | None = None
        self.address: str | None = None
        self.owner_department = ""
        self.owner_agent: str | None = None
        self.shared_with: set[str] = set()
        self.tags: set[str] = set()
        self.consents: dict[str, bool] = {}
        self.orders: dict[str, Order] = {}
        self.archived = False
        self.erased = False

    @property
    def departments(self) -> frozenset[str]:
        """Every department that may see this customer: the owner plus those shared with."""
        return frozenset({self.owner_department, *self.shared_with})

    # --- decisions --------------------------------------------------------------------

    @classmethod
    def register(
        cls,
        ctx: Context,
        *,
        customer_id: UUID,
        name: str,
        company: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        address: str | None = None,
        owner_department: str,
        owner_agent: str | None = None,
        tags: tuple[str, ...] | list[str] = (),
        consents: dict[str, bool] | None = None,
    ) -> Self:
        """A new customer, validated and normalised, with its first event pending."""
        customer = cls(customer_id)
        customer._trigger(
            CustomerRegistered,
            ctx,
            owner_department=check.department(owner_department, "owner_department"),
            owner_agent=check.optional_person(owner_agent, "owner_agent"),
            tags=accepted.tags(tags),
            consents=accepted.consents(consents or {}),
            **accepted.profile(
                name=name, company=company, email=email, phone=phone, address=address
            ),
        )
        return customer

    def update_profile(self, ctx: Context, **changes: Any) -> None:
        """Record only the fields that really change; nothing at all if none does. A
        field held sealed (its caller may not see it: `Change.compares`) is never equal
        to a given value, so a change to it is recorded."""
        self._require_active()
        unknown = set(changes) - PROFILE_FIELDS
        if unknown:
            raise ValidationFailed(sorted(unknown)[0], "not a profile field")
        normalised = accepted.profile(**changes)
        changed = {k: v for k, v in normalised.items() if getattr(self, k) != v}
        if changed:
            self._trigger(CustomerProfileUpdated, ctx, **changed)

    def change_owner(self, ctx: Context, *, department: str, agent: str | None = None) -> None:
        self._require_active()
        to_department = check.department(department)
        to_agent = check.optional_person(agent, "agent")
        if (to_department, to_agent) == (self.owner_department, self.owner_agent):
            return
        self._trigger(
            CustomerOwnerChanged,
            ctx,
            from_department=self.owner_department,
            from_agent=self.owner_agent,
            to_department=to_department,
            to_agent=to_agent,
        )

    def share_with(self, ctx: Context, department: str) -> None:
        """Sharing with a department that already sees the customer changes nothing."""
        self._require_active()
        name = check.department(department)
        if name not in self.departments:
            self._trigger(CustomerShared, ctx, department=name)

    def unshare(self, ctx: Context, department: str) -> None:
        self._require_active()
        name = check.department(department)
        if name in self.shared_with:
            self._trigger(CustomerUnshared, ctx, department=name)

    def tag(self, ctx: Context, tag: str) -> None:
        self._require_active()
        name = check.tag(tag)
        if name not in self.tags:
            self._require_room(len(self.tags), bound.MAX_TAGS, "tags")
            self._trigger(CustomerTagged, ctx, tag=name)

    def untag(self, ctx: Context, tag: str) -> None:
        self._require_active()
        name = check.tag(tag)
        if name in self.tags:
            self._trigger(CustomerUntagged, ctx, tag=name)

    def set_consent(self, ctx: Context, consent: str, granted: bool) -> None:
        """Allowed on archived customers too: withdrawing consent must always work."""
        self._require_not_erased()
        name = check.code(consent, "consent")
        if name not in self.consents:
            self._require_room(len(self.consents), bound.MAX_CONSENTS, "consents")
        if self.consents.get(name) is not bool(granted):
            self._trigger(CustomerConsentChanged, ctx, consent=name, granted=bool(granted))

    def record_order(
        self,
        ctx: Context,
        *,
        order_id: str,
        amount: Decimal | int | str,
        currency: str,
        status: str = "placed",
        ordered_at: datetime | None = None,
    ) -> None:
        self._require_active()
        oid = check.path_id(order_id, "order_id")
        if oid in self.orders:
            raise ValidationFailed("order_id", f"order {oid!r} already recorded")
        self._require_room(len(self.orders), bound.MAX_ORDERS, "orders")
        fields = new_order(
            ctx, amount=amount, currency=currency, status=status, ordered_at=ordered_at
        )
        self._trigger(OrderRecorded, ctx, order_id=oid, **fields)

    def change_order_status(self, ctx: Context, order_id: str, status: str) -> None:
        """Allowed on archived customers: orders in flight still ship or get refunded."""
        self._require_not_erased()
        order = self.orders.get(order_id)
        if order is None:
            raise ValidationFailed("order_id", f"unknown order {order_id!r}")
        to_status = check.code(status, "status")
        if to_status != order.status:
            self._trigger(
                OrderStatusChanged,
                ctx,
                order_id=order_id,
                from_status=order.status,
                to_status=to_status,
            )

    def archive(self, ctx: Context, reason: str | None = None) -> None:
        self._require_not_erased()
        if not self.archived:
            self._trigger(CustomerArchived, ctx, reason=check.optional_text(reason, "reason"))

    def erase(self, ctx: Context, reason: str | None = None) -> None:
        """Right to be forgotten; the service must also destroy the customer's key."""
        self._require_not_erased()
        self._trigger(CustomerErased, ctx, reason=check.optional_text(reason, "reason"))

    def _require_room(self, held: int, most: int, what: str) -> None:
        """Room for one more of `what` (a customer's tags, consents or orders)."""
        if held >= most:
            raise CustomerFullError(f"customer {self.id} holds {most} {what}, the most one may")

    def _require_not_erased(self) -> None:
        if self.erased:
            raise CustomerErasedError(f"customer {self.id} was erased")

    def _require_active(self) -> None:
        self._require_not_erased()
        if self.archived:
            raise CustomerArchivedError(f"customer {self.id} is archived")

    def require_open_for_work(self) -> None:
        """Conversations and tasks call this: no new work on archived/erased customers."""
        self._require_active()

    def held_bytes(self) -> int:
        """Each order, and each tag and consent (up to 50 and 20 of them, ~8 kB)."""
        keys = sum(sys.getsizeof(tag) + 64 for tag in self.tags)  # 64: its slot, erring high
        keys += sum(sys.getsizeof(name) + 64 for name in self.consents)
        return super().held_bytes() + HELD_ENTRY * len(self.orders) + keys

    # --- apply ------------------------------------------------------------------------

    def apply(self, event: DomainEvent) -> None:
        _when.apply(self, event)

    @_when(CustomerRegistered)
    def _registered(self, e: CustomerRegistered) -> None:
        self.name, self.company, self.email = e.name, e.company, e.email
        self.phone, self.address = e.phone, e.address
        self.owner_department, self.owner_agent = e.owner_department, e.owner_agent
        self.tags, self.consents = set(e.tags), dict(e.consents)

    @_when(CustomerProfileUpdated)
    def _profile_updated(self, e: CustomerProfileUpdated) -> None:
        for name in sorted(PROFILE_FIELDS):
            value = getattr(e, name)
            if value is not msgspec.UNSET:
                setattr(self, name, value)

    @_when(CustomerOwnerChanged)
    def _owner_changed(self, e: CustomerOwnerChanged) -> None:
        self.owner_department, self.owner_agent = e.to_department, e.to_agent
        self.shared_with.discard(e.to_department)

    @_when(CustomerShared)
    def _shared(self, e: CustomerShared) -> None:
        self.shared_with.add(e.department)

    @_when(CustomerUnshared)
    def _unshared(self, e: CustomerUnshared) -> None:
        self.shared_with.discard(e.department)

    @_when(CustomerTagged)
    def _tagged(self, e: CustomerTagged) -> None:
        self.tags.add(e.tag)

    @_when(CustomerUntagged)
    def _untagged(self, e: CustomerUntagged) -> None:
        self.tags.discard(e.tag)

    @_when(CustomerConsentChanged)
    def _consent_changed(self, e: CustomerConsentChanged) -> None:
        self.consents[e.consent] = e.granted

    @_when(OrderRecorded)
    def _order_recorded(self, e: OrderRecorded) -> None:
        fields = msgspec.structs.asdict(e)
        self.orders[e.order_id] = Order(
            **{k: fields[k] for k in ("order_id", "amount", "currency", "status", "ordered_at")},
            updated_at=e.occurred_at,
        )

    @_when(OrderStatusChanged)
    def _order_status_changed(self, e: OrderStatusChanged) -> None:
        order = self.orders[e.order_id]
        self.orders[e.order_id] = msgspec.structs.replace(
            order, status=e.to_status, updated_at=e.occurred_at
        )

    @_when(CustomerArchived)
    def _archived(self, e: CustomerArchived) -> None:
        self.archived = True

    @_when(CustomerErased)
    def _erased(self, e: CustomerErased) -> None:
        """Personal fields read as ERASED (or None where nothing was held) from now on."""
        self.erased = True
        self.name = ERASED
        self.email = None if self.email is None else ERASED
        self.phone = None if self.phone is None else ERASED
        self.address = None if self.address is None else ERASED
