"""Group commit on the in-memory store: each concurrent caller gets its own answer,
a conflict in a batch fails only the conflicting command, a batch waits for exactly
the callers still deciding, and the writer thread survives a broken batch."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import IntegrityError, Recording

from domain.base import Aggregate, Context
from domain.customer import Customer
from services.event_store import CrmApplication
from services.group_commit import GroupCommitter, StoreFailedError

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


def test_a_batch_holds_every_caller_in_a_command_and_no_longer() -> None:
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    batches: list[int] = []
    committer = GroupCommitter(
        app, window_ms=5_000, max_batch=50, on_batch=lambda n, _: batches.append(n)
    )
    callers = 8
    deciding = threading.Barrier(callers)

    def command(index: int) -> None:
        with committer.command():
            deciding.wait()  # all are deciding before anyone saves
            committer.save(new_customer(f"c{index}"))

    started = time.monotonic()
    threads = [threading.Thread(target=command, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert batches == [callers]
    assert time.monotonic() - started < 2  # flushed when all had saved, not at the window


def test_a_caller_that_gives_up_does_not_hold_the_batch() -> None:
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    committer = GroupCommitter(app, window_ms=5_000, max_batch=50)
    gave_up = threading.Event()

    def refused_command() -> None:
        with committer.command():
            gave_up.wait()  # e.g. a domain error: it never saves

    other = threading.Thread(target=refused_command)
    other.start()
    started = time.monotonic()
    with committer.command():
        threading.Timer(0.05, gave_up.set).start()
        assert committer.save(new_customer("Ada")) == (1, 1)
    other.join()
    assert time.monotonic() - started < 2


class BrokenOnce(CrmApplication):
    broken = True

    def record(self, *aggregates: Aggregate) -> list[Recording[uuid.UUID]]:
        if self.broken:
            self.broken = False
            raise ValueError("a bug in the mapper")
        return super().record(*aggregates)


def test_the_writer_outlives_a_broken_batch() -> None:
    committer = GroupCommitter(
        BrokenOnce({"PERSISTENCE_MODULE": "eventsourcing.popo"}), window_ms=5, max_batch=10
    )
    with pytest.raises(StoreFailedError) as failed:
        committer.save(new_customer("Ada"))
    assert isinstance(failed.value.__cause__, ValueError)
    assert committer.save(new_customer("Bob")) == (1, 1)
    committer.close()
    with pytest.raises(StoreFailedError):
        committer.save(new_customer("Cy"))
