"""A page's keys are fetched now, in one query, and handed over by their subjects' ints
(`CurrentState.keys_now`: a `UUID`'s hash is a Python method), and open its cells
(`consumers.sealed_rows.open_cells`): a subject erased elsewhere, or with no key in the
store, opens as `ERASED`; a page with nothing sealed asks for no key."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from consumers.keyring import Keyring, MemoryKeyStore
from consumers.sealed_rows import open_cells, owners, sealed_cells
from domain.base import ERASED
from services.current_state import CurrentState
from tests.unit.services.test_current_state import Store


def test_a_page_s_cells_open_with_its_keys_fetched_now_by_their_subjects_ints() -> None:
    store = Store(MemoryKeyStore())
    keyring = Keyring(store.keys_store)
    alice, bob, erased, unknown = uuid4(), uuid4(), uuid4(), uuid4()
    rows: list[dict[str, Any]] = [
        {"customer_id": alice, "name": keyring.encrypt(alice, "Alice")},
        {"customer_id": str(bob), "name": keyring.encrypt(bob, "Bob")},  # an id as text
        {"customer_id": erased, "name": keyring.encrypt(erased, "Eve")},
        {"customer_id": unknown, "name": Keyring(MemoryKeyStore()).encrypt(unknown, "U")},
        {"customer_id": alice, "name": keyring.encrypt(alice, "Al")},
    ]
    store.keys_store.destroy(erased)  # erased elsewhere: the keys fetched now say so
    current = CurrentState(store, Keyring(store.keys_store))
    cells = sealed_cells([(row, ("name",)) for row in rows])

    keys = asyncio.run(current.keys_now(owners(cells)))
    open_cells(keys, cells)

    assert set(keys) == {alice.int, bob.int, erased.int}  # none for the unknown subject
    assert keys[erased.int] is None
    assert [row["name"] for row in rows] == ["Alice", "Bob", ERASED, ERASED, "Al"]
    assert store.asked == [("keys", 4)]  # one query, each subject once


def test_a_page_with_nothing_sealed_asks_for_no_key() -> None:
    store = Store(MemoryKeyStore())
    rows = [{"customer_id": uuid4(), "name": "plain", "email": None}]
    cells = sealed_cells([(row, ("name", "email")) for row in rows])
    current = CurrentState(store, Keyring(store.keys_store))
    assert asyncio.run(current.keys_now(owners(cells))) == {}
    assert store.asked == []
