"""Customer invariants: normalisation, idempotent no-ops, archive and erase rules."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec
import pytest

from domain import fields as bound
from domain.base import ERASED, InvalidTransition, ValidationFailed
from domain.customer import (
    Customer,
    CustomerArchivedError,
    CustomerErasedError,
    CustomerFullError,
    CustomerProfileUpdated,
)
from tests.unit.domain.factories import CUSTOMER_ID, ctx, customer, emitted, replay


def test_register_normalises_and_emits_one_event() -> None:
    registered = Customer.register(
        ctx(),
        customer_id=CUSTOMER_ID,
        name="  Ada  ",
        email="Ada@Example.com",
        phone="+44 (20) 7946-0958",
        owner_department="Sales",
        tags=["VIP", "vip", "b2b"],
        consents={"Email_Marketing": True},
    )
    assert (registered.name, registered.email, registered.phone) == (
        "Ada",
        "ada@example.com",
        "+442079460958",
    )
    assert registered.owner_department == "sales"
    assert registered.tags == {"vip", "b2b"}
    assert registered.consents == {"email_marketing": True}
    assert registered.version == 1
    assert emitted(registered) == ["CustomerRegistered"]


def test_register_rejects_an_empty_name() -> None:
    with pytest.raises(ValidationFailed, match="name"):
        Customer.register(ctx(), customer_id=CUSTOMER_ID, name=" ", owner_department="sales")


def test_profile_update_records_only_changed_fields() -> None:
    subject = customer()
    subject.collect_events()
    subject.update_profile(ctx(), name="Ada Lovelace", email="ADA@example.com", company="ACME")
    (event,) = subject.collect_events()
    assert isinstance(event, CustomerProfileUpdated)
    assert event.company == "ACME"
    assert event.name is msgspec.UNSET
    assert event.email is msgspec.UNSET
    assert b'"name"' not in msgspec.json.encode(event)


def test_profile_update_without_change_emits_nothing() -> None:
    subject = customer()
    subject.collect_events()
    subject.update_profile(ctx(), name="Ada Lovelace")
    assert emitted(subject) == []


def test_profile_update_rejects_unknown_fields_and_bad_values() -> None:
    subject = customer()
    with pytest.raises(ValidationFailed, match="owner"):
        subject.update_profile(ctx(), owner="x")
    with pytest.raises(ValidationFailed, match="email"):
        subject.update_profile(ctx(), email="not-an-email")
    with pytest.raises(ValidationFailed, match="name"):
        subject.update_profile(ctx(), name=None)


def test_tagging_sharing_and_consents_are_idempotent() -> None:
    subject = customer()
    subject.collect_events()
    subject.tag(ctx(), "VIP")
    subject.tag(ctx(), "vip")
    subject.untag(ctx(), "absent")
    subject.share_with(ctx(), "support")
    subject.share_with(ctx(), "support")
    subject.share_with(ctx(), "sales")  # the owner already sees it
    subject.unshare(ctx(), "marketing")
    subject.set_consent(ctx(), "email_marketing", True)
    subject.set_consent(ctx(), "email_marketing", True)
    assert emitted(subject) == ["CustomerTagged", "CustomerShared", "CustomerConsentChanged"]
    assert subject.departments == {"sales", "support"}


def test_owner_change_records_from_and_to() -> None:
    subject = customer()
    subject.share_with(ctx(), "support")
    subject.change_owner(ctx(), department="support", agent="agent-7")
    subject.change_owner(ctx(), department="support", agent="agent-7")
    events = subject.collect_events()
    assert [e.wire_name() for e in events][-1] == "CustomerOwnerChanged"
    assert subject.owner_department == "support"
    assert subject.shared_with == set()  # the new owner no longer needs a share


def test_orders_are_recorded_and_change_status() -> None:
    subject = customer()
    subject.record_order(ctx(), order_id="o-1", amount="99.90", currency="eur")
    subject.change_order_status(ctx(minutes=5), "o-1", "shipped")
    subject.change_order_status(ctx(minutes=6), "o-1", "shipped")
    order = subject.orders["o-1"]
    assert (order.amount, order.currency, order.status) == (Decimal("99.90"), "EUR", "shipped")
    assert order.updated_at == ctx(minutes=5).occurred_at
    assert emitted(subject)[-2:] == ["OrderRecorded", "OrderStatusChanged"]


def test_order_errors() -> None:
    subject = customer()
    subject.record_order(ctx(), order_id="o-1", amount=10, currency="USD")
    with pytest.raises(ValidationFailed, match="already recorded"):
        subject.record_order(ctx(), order_id="o-1", amount=10, currency="USD")
    with pytest.raises(ValidationFailed, match="unknown order"):
        subject.change_order_status(ctx(), "o-2", "paid")
    with pytest.raises(ValidationFailed, match="currency"):
        subject.record_order(ctx(), order_id="o-3", amount=10, currency="dollars")


def test_an_order_id_that_a_url_path_cannot_carry_is_refused_yet_loads_when_stored() -> None:
    """New ids are checked (`check.path_id`); an event stored before the rule decodes,
    applies and names an order that still changes status (events check nothing)."""
    subject = customer()
    with pytest.raises(ValidationFailed, match=r"^order_id: must be an opaque id"):
        subject.record_order(ctx(), order_id="a/b", amount=10, currency="USD")
    subject.record_order(ctx(), order_id="o-1", amount=10, currency="USD")
    registered, recorded = subject.collect_events()
    stored = replay([registered, msgspec.structs.replace(recorded, order_id="a/b")])
    assert isinstance(stored, Customer)
    stored.change_order_status(ctx(), "a/b", "shipped")
    assert stored.orders["a/b"].status == "shipped"


def test_a_customer_holds_at_most_its_bounds_of_tags_consents_and_orders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each is refused once full, one at a time as at registration; what it already
    holds still changes, and a full customer still replays."""
    monkeypatch.setattr(bound, "MAX_ORDERS", 3)
    subject = customer()
    for n in range(bound.MAX_TAGS):
        subject.tag(ctx(), f"t{n}")
    for n in range(bound.MAX_CONSENTS):
        subject.set_consent(ctx(), f"c{n}", True)
    for n in range(3):
        subject.record_order(ctx(), order_id=f"o-{n}", amount=1, currency="EUR")
    version = subject.version
    with pytest.raises(CustomerFullError, match=f"holds {bound.MAX_TAGS} tags"):
        subject.tag(ctx(), "one-more")
    with pytest.raises(CustomerFullError, match=f"holds {bound.MAX_CONSENTS} consents"):
        subject.set_consent(ctx(), "one_more", False)
    with pytest.raises(CustomerFullError, match="holds 3 orders"):
        subject.record_order(ctx(), order_id="o-3", amount=1, currency="EUR")
    assert subject.version == version
    subject.tag(ctx(), "t0")  # already held: no event, no error
    subject.set_consent(ctx(), "c0", False)  # withdrawing one it holds always works
    subject.change_order_status(ctx(), "o-0", "shipped")
    subject.untag(ctx(), "t1")
    subject.tag(ctx(), "one-more")  # room again
    events = subject.collect_events()
    assert [event.wire_name() for event in events[-4:]] == [
        "CustomerConsentChanged", "OrderStatusChanged", "CustomerUntagged", "CustomerTagged",
    ]  # fmt: skip
    assert isinstance(CustomerFullError("x"), InvalidTransition)  # a 409
    assert replay(events) == subject


def test_archived_customer_takes_no_new_work_but_consent_and_orders_move() -> None:
    subject = customer()
    subject.record_order(ctx(), order_id="o-1", amount=10, currency="USD")
    subject.archive(ctx(), reason="duplicate")
    subject.archive(ctx())
    with pytest.raises(CustomerArchivedError):
        subject.tag(ctx(), "vip")
    with pytest.raises(CustomerArchivedError):
        subject.require_open_for_work()
    subject.set_consent(ctx(), "email_marketing", False)
    subject.change_order_status(ctx(), "o-1", "refunded")
    assert subject.archived
    assert emitted(subject).count("CustomerArchived") == 1


def test_erased_customer_reads_erased_and_accepts_nothing() -> None:
    subject = customer()
    subject.erase(ctx(), reason="GDPR art. 17")
    assert (subject.name, subject.email, subject.phone) == (ERASED, ERASED, None)
    commands: list[Callable[[], None]] = [
        lambda: subject.tag(ctx(), "x"),
        lambda: subject.set_consent(ctx(), "email_marketing", True),
        lambda: subject.archive(ctx()),
        lambda: subject.erase(ctx()),
    ]
    for command in commands:
        with pytest.raises(CustomerErasedError):
            command()
    assert issubclass(CustomerErasedError, InvalidTransition)
    assert replay(subject.collect_events()) == subject


def test_naive_command_time_is_rejected() -> None:
    from datetime import datetime

    naive = ctx(at=datetime(2024, 1, 1))
    with pytest.raises(ValidationFailed, match="occurred_at"):
        customer().tag(naive, "vip")
