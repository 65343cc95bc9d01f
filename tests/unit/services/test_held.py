"""`Held`: kept least recently used first, within a number and a byte bound; shares of
one `Budget`, which readers hold together; and the event stream's states
(`AggregatesAsOf`), which a replay through long conversations cannot grow past their
byte bound."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain import codec
from domain.conversation import Conversation
from domain.customer import Customer
from services import states_as_of
from services.event_store import CrmApplication
from services.held import Budget, Held
from services.states_as_of import AggregatesAsOf
from tests.unit.domain.factories import ctx


def test_the_least_recently_used_go_first_past_the_number_or_the_bytes() -> None:
    held: Held[str, str] = Held(max_size=3, max_bytes=100)
    for key, size in (("a", 10), ("b", 20), ("c", 30)):
        held.put(key, key.upper(), size)
    held.touch("a")  # used again: b is now the least recently used
    held.put("d", "D", 10)  # a fourth: past the number
    assert (held.get("b"), len(held), held.held) == (None, 3, 50)
    held.put("e", "E", 70)  # past the bytes: c, the least recently used, goes
    assert [held.get(k) for k in "acde"] == ["A", None, "D", "E"]
    assert (list(held.values()), held.held) == (["A", "D", "E"], 90)
    held.put("d", "D2", 5)  # in place of d, now the most recently used
    assert (held.oldest(), held.held) == ("A", 85)
    held.drop_oldest()
    assert (held.get("a"), held.oldest(), held.held) == (None, "E", 75)
    assert (held.pop("d"), held.pop("d"), len(held), held.held) == ("D2", None, 1, 70)


def test_an_entry_larger_than_the_byte_bound_is_not_kept_and_drops_its_older_one() -> None:
    held: Held[str, str] = Held(max_size=3, max_bytes=100)
    held.put("a", "A", 10)
    held.put("b", "B", 10)
    held.put("a", "A2", 101)
    assert ([held.get(k) for k in "ab"], held.held) == ([None, "B"], 10)
    held.clear()
    assert (len(held), held.held, held.oldest()) == (0, 0, None)


def test_shares_of_a_budget_hold_its_bytes_together_the_least_recently_used_going_first() -> None:
    budget = Budget(100)
    idle, busy = budget.share(10), budget.share(10)
    idle.put("a", "A", 30)
    idle.put("b", "B", 30)
    busy.put("c", "C", 30)
    busy.put("d", "D", 30)  # past the budget: the idle share's oldest goes
    assert ([idle.get("a"), idle.get("b")], budget.held) == ([None, "B"], 90)
    busy.put("e", "E", 50)  # the idle share's last, then the busy share's own oldest
    assert [idle.get("b"), busy.get("c"), busy.get("d"), busy.get("e")] == [None, None, "D", "E"]
    assert (idle.held, busy.held, budget.held) == (0, 80, 80)
    assert (busy.pop("d"), budget.held) == ("D", 50)
    idle.put("f", "F", 101)  # larger than the whole budget: not kept
    assert (idle.get("f"), budget.held) == (None, 50)
    busy.close()  # a reader gone gives its bytes back
    assert (busy.held, budget.held) == (0, 0)


def test_an_event_streams_states_stay_within_their_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A conversation larger than the bound is loaded at each of its next events instead
    of kept; a small one is kept and its next event applied to it."""
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    customer = Customer.register(
        ctx(), customer_id=uuid.uuid4(), name="Ada", owner_department="sales"
    )
    app.save(customer)
    small, large = (
        Conversation.open(
            ctx(), conversation_id=uuid.uuid4(), customer=customer, channel="chat", subject="s"
        )
        for _ in range(2)
    )
    for n in range(3):
        large.log_message(
            ctx(), message_id=f"m{n}", direction="inbound", author="a", content="x" * 10_000
        )
    small.log_message(ctx(), message_id="m", direction="inbound", author="a", content="x")
    app.save(large, small)
    events = [codec.sealed_event(s) for c in (large, small) for s in app.stored_events(c.id)]
    bound = Conversation(uuid.uuid4()).held_bytes() + 10_000
    assert small.held_bytes() < bound < large.held_bytes()
    monkeypatch.setattr(states_as_of, "STATES_BYTES", bound)
    states = AggregatesAsOf(app)
    loads: list[int] = []
    sealed_load = app.sealed_load

    def counted(*args: Any) -> Any:
        loads.append(args[2])
        return sealed_load(*args)

    monkeypatch.setattr(app, "sealed_load", counted)
    seen = [states.after(event).version for event in events]
    assert seen == [1, 2, 3, 4, 1, 2]
    assert loads == [1, 3, 4, 1]  # the large one past its first message: not kept, loaded
