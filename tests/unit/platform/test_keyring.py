from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from cryptography.exceptions import InvalidTag

from consumers.key_stores import SqliteKeyStore
from consumers.keyring import PREFIX, Keyring, MemoryKeyStore
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
