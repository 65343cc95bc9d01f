"""Customer against a plain model under random command sequences."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from domain.base import DomainError
from domain.customer import Customer, CustomerArchivedError, CustomerErasedError
from tests.unit.domain.factories import CUSTOMER_ID
from tests.unit.domain.machine_support import MACHINE_SETTINGS, AggregateMachine

departments = st.sampled_from(["sales", "support", "marketing"])
tags = st.sampled_from(["vip", "b2b", "churn-risk"])
emails = st.sampled_from(["ada@example.com", "Ada@Example.com", "bob@example.org", None])
statuses = st.sampled_from(["placed", "paid", "shipped", "refunded"])
order_ids = st.sampled_from(["o-1", "o-2", "o-3"])


class CustomerMachine(AggregateMachine):
    customer: Customer
    model: dict[str, Any]

    def subject(self) -> Customer:
        return self.customer

    @initialize()
    def register(self) -> None:
        self.customer = Customer.register(
            self.next_ctx(), customer_id=CUSTOMER_ID, name="Ada", owner_department="sales"
        )
        self.history.extend(self.customer.collect_events())
        self.model = {"email": None, "tags": set(), "shared": set(), "owner": "sales"}
        self.model |= {"consents": {}, "orders": {}, "archived": False, "erased": False}

    def blocked(self, archive_blocks: bool = True) -> type[DomainError] | None:
        if self.model["erased"]:
            return CustomerErasedError
        if archive_blocks and self.model["archived"]:
            return CustomerArchivedError
        return None

    @rule(email=emails)
    def update_email(self, email: str | None) -> None:
        error = self.blocked()
        self.run(error, lambda: self.customer.update_profile(self.next_ctx(), email=email))
        if error is None:
            self.model["email"] = email.lower() if email else None

    @rule(tag=tags, add=st.booleans())
    def tag_or_untag(self, tag: str, add: bool) -> None:
        error = self.blocked()
        action = self.customer.tag if add else self.customer.untag
        self.run(error, lambda: action(self.next_ctx(), tag))
        if error is None:
            (self.model["tags"].add if add else self.model["tags"].discard)(tag)

    @rule(department=departments, share=st.booleans())
    def share_or_unshare(self, department: str, share: bool) -> None:
        error = self.blocked()
        action = self.customer.share_with if share else self.customer.unshare
        self.run(error, lambda: action(self.next_ctx(), department))
        if error is None and department != self.model["owner"]:
            (self.model["shared"].add if share else self.model["shared"].discard)(department)

    @rule(department=departments)
    def change_owner(self, department: str) -> None:
        error = self.blocked()
        self.run(error, lambda: self.customer.change_owner(self.next_ctx(), department=department))
        if error is None:
            self.model["owner"] = department
            self.model["shared"].discard(department)

    @rule(granted=st.booleans())
    def set_consent(self, granted: bool) -> None:
        error = self.blocked(archive_blocks=False)
        self.run(error, lambda: self.customer.set_consent(self.next_ctx(), "email", granted))
        if error is None:
            self.model["consents"]["email"] = granted

    @rule(order_id=order_ids, amount=st.decimals(0, 10_000, places=2))
    def record_order(self, order_id: str, amount: object) -> None:
        error = self.blocked() or (DomainError if order_id in self.model["orders"] else None)
        self.run(
            error,
            lambda: self.customer.record_order(
                self.next_ctx(), order_id=order_id, amount=str(amount), currency="EUR"
            ),
        )
        if error is None:
            self.model["orders"][order_id] = "placed"

    @rule(order_id=order_ids, status=statuses)
    def change_order_status(self, order_id: str, status: str) -> None:
        error = self.blocked(archive_blocks=False)
        if error is None and order_id not in self.model["orders"]:
            error = DomainError
        change = self.customer.change_order_status
        self.run(error, lambda: change(self.next_ctx(), order_id, status))
        if error is None:
            self.model["orders"][order_id] = status

    @rule()
    def archive(self) -> None:
        error = self.blocked(archive_blocks=False)
        self.run(error, lambda: self.customer.archive(self.next_ctx()))
        self.model["archived"] = self.model["archived"] or error is None

    @rule()
    def erase(self) -> None:
        error = self.blocked(archive_blocks=False)
        self.run(error, lambda: self.customer.erase(self.next_ctx()))
        self.model["erased"] = True

    @invariant()
    def matches_the_model(self) -> None:
        c, m = self.customer, self.model
        assert (c.tags, c.shared_with, c.owner_department) == (m["tags"], m["shared"], m["owner"])
        assert (c.consents, c.archived, c.erased) == (m["consents"], m["archived"], m["erased"])
        assert {k: o.status for k, o in c.orders.items()} == m["orders"]
        if not m["erased"]:
            assert c.email == m["email"]
        assert c.owner_department not in c.shared_with


CustomerMachine.TestCase.settings = MACHINE_SETTINGS
TestCustomerMachine = CustomerMachine.TestCase
