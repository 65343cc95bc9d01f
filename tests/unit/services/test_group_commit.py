"""Group commit on the in-memory store: each concurrent command gets its own answer,
a conflict in a batch fails only the conflicting command, a batch waits for half of
the commands in flight and no longer, and the committer survives a broken batch."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import IntegrityError

from domain.base import Aggregate, Context
from domain.customer import Customer
from services.event_store import CrmApplication, Saved
from services.group_commit import GroupCommitter, StoreFailedError

pytestmark = pytest.mark.anyio

CTX = Context(
    actor="t", actor_department="sales", occurred_at=datetime.now(UTC), correlation_id="c"
)


def new_customer(name: str) -> Customer:
    return Customer.register(CTX, customer_id=uuid.uuid4(), name=name, owner_department="sales")


def popo() -> CrmApplication:
    return CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})


async def save_together(committer: GroupCommitter, customers: list[Customer]) -> list[object]:
    """One command per customer, all deciding at once; answers or errors, in order."""

    async def command(customer: Customer) -> object:
        with committer.command():
            await asyncio.sleep(0)  # every command has started before any saves
            return await committer.save(customer)

    calls = [command(customer) for customer in customers]
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def test_lone_command_is_saved_at_once() -> None:
    batches: list[int] = []
    committer = GroupCommitter(
        popo(), window_ms=5_000, max_batch=10, on_batch=lambda n, _: batches.append(n)
    )
    started = time.monotonic()
    with committer.command():
        saved = await committer.save(new_customer("Ada"))
        assert (saved.version, saved.position) == (1, 1)
    assert batches == [1]
    assert time.monotonic() - started < 2  # not held for the window


async def test_concurrent_commands_each_get_their_own_answer() -> None:
    app = popo()
    batches: list[int] = []
    committer = GroupCommitter(
        app, window_ms=5, max_batch=8, on_batch=lambda n, _: batches.append(n)
    )
    customers = [new_customer(f"c{i}") for i in range(40)]
    answers = await save_together(committer, customers)
    positions = sorted(a[1] for a in answers if isinstance(a, tuple))
    assert positions == list(range(1, 41))
    for customer, answer in zip(customers, answers, strict=True):
        assert app.load(Customer, customer.id).version == answer[0] == 1  # type: ignore[index]
    assert batches == [8] * 5  # max_batch holds


async def test_each_answer_names_its_aggregate_s_last_event_as_stored() -> None:
    """Aggregates of several events in one batch: each answer is its aggregate's new
    version, the position of its last event and its events in order, as stored."""
    app = popo()
    committer = GroupCommitter(app, window_ms=5, max_batch=8)
    customers = [new_customer(f"c{i}") for i in range(4)]
    for at, customer in enumerate(customers):
        for step in range(at):
            customer.update_profile(CTX, company=f"Company {step}")
    answers = await save_together(committer, customers)
    stored = app.recorder.select_notifications(start=1, limit=100)
    assert len(stored) == 1 + 2 + 3 + 4
    for customer, answer in zip(customers, answers, strict=True):
        assert isinstance(answer, Saved)
        mine = [n for n in stored if n.originator_id == customer.id]
        assert answer.version == mine[-1].originator_version == len(mine)
        assert answer.position == mine[-1].id
        assert [e.originator_version for e in answer.events] == [1, *range(2, len(mine) + 1)]
        assert [app.mapper.to_stored_event(e).state for e in answer.events] == [
            n.state for n in mine
        ]


async def test_one_conflict_does_not_fail_the_others() -> None:
    app = popo()
    committer = GroupCommitter(app, window_ms=5, max_batch=50)
    saved = new_customer("Ada")
    await committer.save(saved)
    first, second = app.load(Customer, saved.id), app.load(Customer, saved.id)
    first.tag(CTX, "vip")
    second.tag(CTX, "gold")
    others = [new_customer(f"c{i}") for i in range(10)]
    answers = await save_together(committer, [first, second, *others])
    conflicts = [a for a in answers if isinstance(a, IntegrityError)]
    assert len(conflicts) == 1
    assert all(isinstance(a, tuple) for a in answers[2:])
    assert app.load(Customer, saved.id).version == 2


async def test_a_batch_waits_for_half_of_the_commands_in_flight_and_no_longer() -> None:
    batches: list[int] = []
    committer = GroupCommitter(
        popo(), window_ms=5_000, max_batch=50, on_batch=lambda n, _: batches.append(n)
    )

    async def command(index: int) -> None:
        with committer.command():
            await asyncio.sleep(0.01 * index)  # e.g. loading from the store
            await committer.save(new_customer(f"c{index}"))

    started = time.monotonic()
    await asyncio.gather(*(command(i) for i in range(8)))
    assert batches[0] == 4  # half of the 8 in flight, written without waiting for the rest
    assert sum(batches) == 8
    assert time.monotonic() - started < 2  # never held for the window


async def test_under_steady_load_two_groups_alternate() -> None:
    """Callers that command again at once: a batch holds half of them, so one half
    decides while the other is written."""
    app = popo()
    batches: list[int] = []
    committer = GroupCommitter(
        app, window_ms=5_000, max_batch=50, on_batch=lambda n, _: batches.append(n)
    )
    customers = [new_customer(f"c{i}") for i in range(8)]

    async def caller(customer: Customer) -> None:
        for n in range(5):
            with committer.command():
                await asyncio.sleep(0)
                customer.tag(CTX, f"t{n}")
                await committer.save(customer)

    await asyncio.gather(*(caller(c) for c in customers))
    assert sum(batches) == 8 * 5
    assert max(batches) == 4
    assert all(app.load(Customer, c.id).version == 6 for c in customers)


async def test_a_command_that_gives_up_does_not_hold_the_batch() -> None:
    committer = GroupCommitter(popo(), window_ms=5_000, max_batch=50)
    gave_up = asyncio.Event()

    async def refused_command() -> None:
        with committer.command():
            await gave_up.wait()  # e.g. a domain error after a load: it never saves

    async def saving_command() -> Saved:
        with committer.command():
            asyncio.get_running_loop().call_later(0.05, gave_up.set)
            return await committer.save(new_customer("Ada"))

    started = time.monotonic()
    _, saved = await asyncio.gather(refused_command(), saving_command())
    assert (saved.version, saved.position) == (1, 1)
    assert time.monotonic() - started < 2


class BrokenOnce(CrmApplication):
    broken = True

    def saved(self, *aggregates: Aggregate) -> dict[int, Saved]:
        if self.broken:
            self.broken = False
            raise ValueError("a bug in the mapper")
        return super().saved(*aggregates)


async def test_the_committer_outlives_a_broken_batch() -> None:
    committer = GroupCommitter(
        BrokenOnce({"PERSISTENCE_MODULE": "eventsourcing.popo"}), window_ms=5, max_batch=10
    )
    with pytest.raises(StoreFailedError) as failed:
        await committer.save(new_customer("Ada"))
    assert isinstance(failed.value.__cause__, ValueError)
    saved = await committer.save(new_customer("Bob"))
    assert (saved.version, saved.position) == (1, 1)
    await committer.aclose()
    with pytest.raises(StoreFailedError):
        await committer.save(new_customer("Cy"))
