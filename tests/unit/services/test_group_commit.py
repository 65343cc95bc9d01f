"""Group commit on the in-memory store: each concurrent caller gets its own answer,
and a conflict in a batch fails only the conflicting command."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from eventsourcing.persistence import IntegrityError

from domain.base import Context
from domain.customer import Customer
from services.event_store import CrmApplication
from services.group_commit import GroupCommitter

CTX = Context(
    actor="t", actor_department="sales", occurred_at=datetime.now(UTC), correlation_id="c"
)


def new_customer(name: str) -> Customer:
    return Customer.register(CTX, customer_id=uuid.uuid4(), name=name, owner_department="sales")


def run_together(committer: GroupCommitter, customers: list[Customer]) -> list[object]:
    answers: list[object] = [None] * len(customers)
    start = threading.Barrier(len(customers))

    def call(index: int) -> None:
        start.wait()
        try:
            answers[index] = committer.save(customers[index])
        except IntegrityError as error:
            answers[index] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(customers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_lone_command_is_saved_at_once() -> None:
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    batches: list[int] = []
    committer = GroupCommitter(
        app, window_ms=50, max_batch=10, on_batch=lambda n, _: batches.append(n)
    )
    assert committer.save(new_customer("Ada")) == (1, 1)
    assert batches == [1]


def test_concurrent_callers_each_get_their_own_answer() -> None:
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    committer = GroupCommitter(app, window_ms=5, max_batch=8)
    customers = [new_customer(f"c{i}") for i in range(40)]
    answers = run_together(committer, customers)
    positions = sorted(a[1] for a in answers if isinstance(a, tuple))
    assert positions == list(range(1, 41))
    for customer, answer in zip(customers, answers, strict=True):
        assert app.load(Customer, customer.id).version == answer[0] == 1  # type: ignore[index]


def test_one_conflict_does_not_fail_the_others() -> None:
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    committer = GroupCommitter(app, window_ms=5, max_batch=50)
    saved = new_customer("Ada")
    committer.save(saved)
    first, second = app.load(Customer, saved.id), app.load(Customer, saved.id)
    first.tag(CTX, "vip")
    second.tag(CTX, "gold")
    others = [new_customer(f"c{i}") for i in range(10)]
    answers = run_together(committer, [first, second, *others])
    conflicts = [a for a in answers if isinstance(a, IntegrityError)]
    assert len(conflicts) == 1
    assert all(isinstance(a, tuple) for a in answers[2:])
    assert app.load(Customer, saved.id).version == 2
