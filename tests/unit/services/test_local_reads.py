"""Current state over a local source (`CurrentState(..., local=True)`: SQLite on the
loop, memory): each question is asked at once (`Direct`), not gathered into a query run
by a task of its own, so a read of a kept aggregate or a catch-up never gives the loop
back, and each answer is as new as its question."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from consumers.keyring import Keyring, MemoryKeyStore
from domain.customer import Customer
from services.current_state import CurrentState
from tests.unit.services.test_current_state import CTX, Store, customer

T = TypeVar("T")


def at_once(read: Coroutine[Any, Any, T]) -> T:
    """The read's result, run in a task of its own on a loop: AssertionError unless it
    was done in the task's first step (it never gave the loop back)."""

    async def first_step() -> T:
        task = asyncio.ensure_future(read)
        await asyncio.sleep(0)  # the task's first step
        assert task.done(), "it gave the event loop back"
        return task.result()

    return asyncio.run(first_step())


@pytest.fixture(name="store")
def hand_written_store() -> Store:
    return Store(MemoryKeyStore())


def local(store: Store) -> CurrentState:
    return CurrentState(store, Keyring(store.keys_store), local=True)


def test_a_kept_customer_is_read_without_giving_the_loop_back(store: Store) -> None:
    ada = customer(store)
    current = local(store)
    first = at_once(current.load(Customer, ada.id))
    again = at_once(current.load(Customer, ada.id))
    assert again is first  # kept: one head query, nothing else
    assert store.asked[-1:] == [("head", None)]


def test_each_read_asks_the_head_as_it_comes(store: Store) -> None:
    ada = customer(store)
    current = local(store)
    at_once(current.load(Customer, ada.id))
    ada.update_profile(CTX, company="Acme")
    store.save(ada)  # committed between two reads
    read = at_once(current.load(Customer, ada.id))
    assert (read.version, read.company) == (2, "Acme")
    assert [kind for kind, _ in store.asked].count("head") == 2


def test_a_catch_up_is_asked_at_once(store: Store) -> None:
    ada = customer(store)
    current = local(store)
    mine = at_once(current.rebuilt(Customer, ada.id))
    ada.update_profile(CTX, company="Acme")
    store.save(ada)
    caught_up = at_once(current.caught_up(mine))
    assert (caught_up.version, caught_up.company) == (2, "Acme")
    assert store.asked[-1] == ("events of each", [1])


def test_a_source_that_awaits_has_its_questions_gathered(store: Store) -> None:
    """The other way (PostgreSQL): a read waits for the gathered head query's task."""
    ada = customer(store)
    current = CurrentState(store, Keyring(store.keys_store))
    with pytest.raises(AssertionError, match="gave the event loop back"):
        at_once(current.load(Customer, ada.id))
