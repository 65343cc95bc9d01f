from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cryptography.exceptions import InvalidTag

from consumers.key_stores import SqliteKeyStore
from consumers.keyring import PREFIX, Keyring, MemoryKeyStore
from consumers.sealed_rows import JOIN, open_rows
from domain.base import ERASED


def test_sealed_text_opens_with_the_subjects_key_only() -> None:
    keyring = Keyring(MemoryKeyStore())
    alice, bob = uuid4(), uuid4()
    sealed = keyring.encrypt(alice, "Alice Example")
    assert sealed.startswith(PREFIX)
    assert "Alice" not in sealed
    assert keyring.decrypt(alice, sealed) == "Alice Example"
    keyring.encrypt(bob, "warm-up")  # bob gets a key of his own, which cannot open it
    try:
        opened = keyring.decrypt(bob, sealed)
    except InvalidTag:
        opened = None
    assert opened is None


def test_erasing_makes_old_ciphertext_unreadable_and_blocks_new_keys(tmp_path: Path) -> None:
    keyring = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
    subject = uuid4()
    sealed = keyring.encrypt(subject, "+4915112345678")
    keyring.erase(subject)
    assert keyring.decrypt(subject, sealed) == ERASED
    assert keyring.encrypt(subject, "new personal data") == ERASED
    reopened = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
    assert reopened.decrypt(subject, sealed) == ERASED


def test_keys_survive_a_restart(tmp_path: Path) -> None:
    subject = uuid4()
    sealed = Keyring(SqliteKeyStore(tmp_path / "keys.db")).encrypt(subject, "Bob")
    assert Keyring(SqliteKeyStore(tmp_path / "keys.db")).decrypt(subject, sealed) == "Bob"


def test_a_page_opener_opens_each_row_with_its_own_customer_s_key_as_fetched() -> None:
    store = MemoryKeyStore()
    keyring = Keyring(store)
    alice, bob, erased = uuid4(), uuid4(), uuid4()
    rows: list[dict[str, Any]] = [
        {"customer_id": alice, "name": keyring.encrypt(alice, "Alice"), "email": "old@x.io"},
        {"customer_id": str(bob), "name": keyring.encrypt(bob, "Bob"), "email": None},
        {"customer_id": erased, "name": keyring.encrypt(erased, "Eve"), "email": "e@x.io"},
        {"customer_id": str(alice), "name": keyring.encrypt(alice, "Al"), "email": None},
    ]  # the last row: alice's again, as another object (a page of her conversations)
    content = JOIN.join(keyring.encrypt(alice, part) for part in ("hello", "again"))
    rows[0]["email"] = content
    store.destroy(erased)  # erased elsewhere: the page's keys, fetched now, say so
    open_rows(Keyring(store), [(row, ("name", "email")) for row in rows])
    assert [row["name"] for row in rows] == ["Alice", "Bob", ERASED, "Al"]
    assert [row["email"] for row in rows] == ["hello\nagain", None, "e@x.io", None]
    mixed = keyring.encrypt(bob, "Bob")  # sealed under bob's key, claimed as alice's row
    with pytest.raises(InvalidTag):
        open_rows(keyring, [({"customer_id": alice, "name": mixed}, ("name",))])
