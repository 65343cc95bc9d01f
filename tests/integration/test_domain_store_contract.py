"""One domain scenario suite run against every event store backend.

popo (in memory), a SQLite file and PostgreSQL must store and reload the three
aggregates identically and enforce optimistic concurrency the same way. PostgreSQL
uses the `pg_url` fixture: skipped locally without CRM_DATABASE_URL, failed under CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from services.event_store import CrmApplication, open_event_store
from tests.unit.domain.factories import T0, ctx


@pytest.fixture(params=["popo", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CrmApplication]:
    if request.param == "popo":
        app = open_event_store(None, None)
    elif request.param == "sqlite":
        app = open_event_store(None, tmp_path)
    else:
        app = open_event_store(request.getfixturevalue("pg_url"), None)
    yield app
    app.close()


def register(store: CrmApplication) -> Customer:
    customer = Customer.register(
        ctx(),
        customer_id=uuid4(),
        name="Ada Lovelace",
        email="ada@example.com",
        phone="+44 20 7946 0958",
        owner_department="sales",
        tags=["vip"],
    )
    store.record(customer)
    return customer


def test_customer_round_trip(store: CrmApplication) -> None:
    customer = register(store)
    customer.update_profile(ctx(minutes=1), company="ACME", address="12 Analytical St")
    customer.share_with(ctx(minutes=2), "support")
    customer.record_order(ctx(minutes=3), order_id="o-1", amount="1234.50", currency="gbp")
    customer.change_order_status(ctx(minutes=4), "o-1", "paid")
    store.record(customer)
    loaded = store.load(Customer, customer.id)
    assert loaded == customer
    assert loaded.version == 5
    assert str(loaded.orders["o-1"].amount) == "1234.50"


def test_conversation_lifecycle_round_trip(store: CrmApplication) -> None:
    customer = register(store)
    conversation = Conversation.open(
        ctx(), conversation_id=uuid4(), customer=customer, channel="chat", subject="Help"
    )
    conversation.log_message(ctx(), message_id="m1", direction="inbound", author="Ada", content="?")
    conversation.add_note(ctx(), message_id="n1", content="internal")
    conversation.correct_message(ctx(), "m1", content="Help?", reason="typo")
    conversation.hand_off(ctx(), to_department="support", to_agent="agent-2")
    conversation.close(ctx(), outcome="resolved", summary="done")
    conversation.rate_satisfaction(ctx(actor="survey"), score=4)
    conversation.score_recommendation(ctx(actor="survey"), score=10)
    store.record(conversation)
    assert store.load(Conversation, conversation.id) == conversation


def test_task_lifecycle_round_trip(store: CrmApplication) -> None:
    customer = register(store)
    task = Task.create(
        ctx(), task_id=uuid4(), customer=customer, title="Call", due_at=T0 + timedelta(hours=4)
    )
    task.assign(ctx(), assignee="agent-1")
    task.start(ctx(minutes=1))
    task.log_progress(ctx(minutes=2), note="voicemail", percent=20)
    task.complete(ctx(minutes=3), resolution="called")
    task.evaluate(ctx(actor="boss", minutes=4), score=5)
    store.record(task)
    loaded = store.load(Task, task.id)
    assert loaded == task
    assert loaded.on_time is True


def test_several_aggregates_saved_in_one_transaction(store: CrmApplication) -> None:
    customers = [
        Customer.register(ctx(), customer_id=uuid4(), name=f"C{i}", owner_department="sales")
        for i in range(5)
    ]
    store.record(*customers)
    assert all(store.load(Customer, c.id) == c for c in customers)


def test_stale_save_is_rejected(store: CrmApplication) -> None:
    customer = register(store)
    first = store.load(Customer, customer.id)
    second = store.load(Customer, customer.id)
    first.tag(ctx(minutes=1), "b2b")
    store.record(first)
    second.tag(ctx(minutes=1), "churn-risk")
    with pytest.raises(IntegrityError):
        store.record(second)
    assert store.load(Customer, customer.id).tags == {"vip", "b2b"}


def test_history_replays_to_the_same_state(store: CrmApplication) -> None:
    customer = register(store)
    customer.erase(ctx(minutes=1))
    store.record(customer)
    history = store.history(customer.id)
    assert [e.wire_name() for e in history] == ["CustomerRegistered", "CustomerErased"]
    rebuilt = None
    for event in history:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt == customer


def test_unknown_customer_is_not_found(store: CrmApplication) -> None:
    from domain.base import NotFound

    with pytest.raises(NotFound):
        store.load(Customer, UUID(int=7))


def test_notification_log_pages(store: CrmApplication) -> None:
    """The relay's page read: every store (PostgreSQL through its binary fast path)
    answers start / limit / inclusive_of_start the same way, in commit order."""
    customers = [register(store) for _ in range(4)]
    for customer in customers:
        customer.tag(ctx(minutes=1), "b2b")
    store.record(*customers)
    log = store.recorder.select_notifications(start=None, limit=100)
    assert [n.id for n in log] == list(range(1, 9))
    assert [(n.originator_id, n.originator_version) for n in log[4:]] == [
        (c.id, 2) for c in customers
    ]
    assert all(isinstance(n.state, bytes) and n.topic.endswith("@1") for n in log)
    assert [n.id for n in store.recorder.select_notifications(start=3, limit=2)] == [3, 4]
    page = store.recorder.select_notifications(start=3, limit=2, inclusive_of_start=False)
    assert [n.id for n in page] == [4, 5]
    assert store.recorder.select_notifications(start=9, limit=5) == []
    assert [n.id for n in store.recorder.select_notifications(start=2, limit=9, stop=4)] == [
        2,
        3,
        4,
    ]
