"""Department views: visibility, masking, timeline edits, archive and erasure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.base import ERASED, Context, DomainEvent
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from projections import PROJECTIONS
from tests.unit.projections.memory import replay

T0 = datetime(2024, 5, 1, 9, tzinfo=UTC)


def ctx(minutes: int, department: str = "sales") -> Context:
    at = T0 + timedelta(minutes=minutes)
    return Context(actor="ann", actor_department=department, occurred_at=at, correlation_id="c")


def story() -> tuple[uuid.UUID, list[DomainEvent]]:
    customer = Customer.register(
        ctx(0), customer_id=uuid.uuid4(), name="Ada", email="ada@example.com", phone="+4930123456",
        owner_department="support", consents={"email_marketing": False}, tags=["vip"],
    )  # fmt: skip
    customer.share_with(ctx(1), "sales")
    conv = Conversation.open(
        ctx(2), conversation_id=uuid.uuid4(), customer=customer, channel="email", subject="Hi"
    )
    conv.log_message(ctx(3), message_id="m1", direction="inbound", author="Ada", content="hello")
    conv.log_message(ctx(4), message_id="m2", direction="outbound", author="ann", content="hi")
    conv.log_message(ctx(5), message_id="m3", direction="inbound", author="Ada", content="oops")
    conv.correct_message(ctx(6), "m1", content="hello!", reason="typo")
    conv.retract_message(ctx(7), "m3", reason="wrong")
    task = Task.create(ctx(8), task_id=uuid.uuid4(), customer=customer, title="Call back")
    customer.set_consent(ctx(9), "email_marketing", True)
    events = [*customer.collect_events(), *conv.collect_events(), *task.collect_events()]
    return customer.id, sorted(events, key=lambda e: e.occurred_at)


def rows(name: str, table: str, events: list[DomainEvent]) -> list[dict[str, Any]]:
    return replay(PROJECTIONS[name], events).sorted_rows(table)


def test_sales_sees_a_shared_customer_with_contacts_and_tasks() -> None:
    _, events = story()
    (customer,) = rows("sales", "customers", events)
    assert customer["visible"]
    assert customer["shared_with"] == "sales"
    assert [t["status"] for t in rows("sales", "tasks", events)] == ["open"]
    (activity,) = rows("sales", "activity", events)
    assert activity["last_contact_at"] == T0 + timedelta(minutes=5)
    assert activity["last_contact_channel"] == "email"


def test_marketing_sees_email_only_with_consent_and_never_a_phone() -> None:
    _, events = story()
    before = rows("marketing", "customers", events[:-1])[0]
    after = rows("marketing", "customers", events)[0]
    assert before["email"] is None
    assert after["email"] == "ada@example.com"
    assert "phone" not in after


def test_timeline_shows_corrections_and_hides_retractions() -> None:
    _, events = story()
    messages = [r for r in rows("shared", "timeline", events) if r["event_type"] == "MessageLogged"]
    assert sorted((r["content"], r["corrected"]) for r in messages) == [
        ("hello!", True), ("hi", False),
    ]  # fmt: skip


def test_support_queue_waits_since_the_unanswered_inbound_message() -> None:
    _, events = story()
    (conversation,) = rows("support", "conversations", events)
    assert conversation["waiting_since"] == T0 + timedelta(minutes=5)


def test_archive_removes_the_customer_from_department_views() -> None:
    customer_id, events = story()
    customer = Customer.blank(customer_id)
    for event in events:
        if event.originator_id == customer_id:
            event.mutate(customer)
    customer.archive(ctx(20))
    events = [*events, *customer.collect_events()]
    for name in ("sales", "support", "marketing"):
        tables = replay(PROJECTIONS[name], events).tables
        assert not [t for t, r in tables.items() if r and not t.startswith("_")], name
    assert not rows("shared", "customer_departments", events)


def test_erasure_blanks_personal_data_everywhere() -> None:
    customer_id, events = story()
    customer = Customer.blank(customer_id)
    for event in events:
        if event.originator_id == customer_id:
            event.mutate(customer)
    customer.erase(ctx(30))
    events = [*events, *customer.collect_events()]
    for name, projection in PROJECTIONS.items():
        session = replay(projection, events)
        for spec in projection.tables:
            for row in session.tables[spec.name].values():
                assert all(row[c] in (None, ERASED) for c in spec.personal), (name, spec.name)


def test_an_owner_taking_a_shared_customer_drops_it_from_shared_with() -> None:
    """Owner support -> shared with sales -> owner sales -> owner marketing: the domain
    dropped sales from `shared_with` when sales became the owner, so sales no longer
    sees the customer once marketing owns it (the sales row kept `shared_with='sales'`)."""
    customer = Customer.register(
        ctx(0), customer_id=uuid.uuid4(), name="Ada", owner_department="support"
    )
    customer.share_with(ctx(1), "sales")
    customer.change_owner(ctx(2), department="sales")
    customer.change_owner(ctx(3), department="marketing")
    assert customer.shared_with == set()
    (row,) = rows("sales", "customers", customer.collect_events())
    assert (row["owner_department"], row["shared_with"], row["visible"]) == ("marketing", "", False)


def test_a_consent_changed_after_archiving_brings_no_marketing_row_back() -> None:
    """The domain lets an archived customer withdraw consent; marketing keeps no row of
    an archived customer (the oracle test found the consent row coming back)."""
    customer = Customer.register(
        ctx(0), customer_id=uuid.uuid4(), name="Ada", owner_department="marketing",
        consents={"email_marketing": True},
    )  # fmt: skip
    customer.archive(ctx(1))
    customer.set_consent(ctx(2), "email_marketing", False)
    events = customer.collect_events()
    assert [rows("marketing", table, events) for table in ("customers", "consents")] == [[], []]
