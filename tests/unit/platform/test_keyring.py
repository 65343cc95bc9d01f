from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from cryptography.exceptions import InvalidTag

from consumers import keyring as keyring_module
from consumers.key_stores import SqliteKeyStore
from consumers.keyring import KEY_CACHE_SECONDS, PREFIX, Keyring, MemoryKeyStore, new_data_key
from consumers.sealed_rows import JOIN, open_rows
from domain.base import ERASED
from domain.codec import text_size
from tests.fake_clock import Clock


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


def test_a_subject_is_known_by_its_id_whichever_uuid_object_names_it() -> None:
    """The keyring holds keys and erasures by `UUID.int`: ids come parsed from requests,
    rows and events, each its own object."""
    keyring, subject = Keyring(MemoryKeyStore()), uuid4()
    sealed = keyring.encrypt(subject, "Ada")
    same = UUID(str(subject))
    assert keyring.known_erased(same) is False
    assert keyring.missing([same]) == []
    assert keyring.decrypt(same, sealed) == "Ada"
    keyring.erase(UUID(str(subject)))
    assert keyring.known_erased(subject) is True
    assert keyring.missing([same]) == []
    assert keyring.encrypt(same, "Ada") == ERASED


def test_erasing_makes_old_ciphertext_unreadable_and_blocks_new_keys(tmp_path: Path) -> None:
    keyring = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
    subject = uuid4()
    sealed = keyring.encrypt(subject, "+4915112345678")
    keyring.erase(subject)
    assert keyring.decrypt(subject, sealed) == ERASED
    assert keyring.encrypt(subject, "new personal data") == ERASED
    reopened = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
    assert reopened.decrypt(subject, sealed) == ERASED


def test_a_subject_s_opener_opens_its_values_as_decrypt_does() -> None:
    keyring = Keyring(MemoryKeyStore())
    subject, other = uuid4(), uuid4()
    values = [keyring.encrypt(subject, "Ada"), ERASED, "plain", keyring.encrypt(subject, "a@x.org")]
    open_value = keyring.subject_opener(subject)
    assert [open_value(v) for v in values] == ["Ada", ERASED, "plain", "a@x.org"]
    assert [open_value(v) for v in values] == [keyring.decrypt(subject, v) for v in values]
    keyring.encrypt(other, "Bob")
    with pytest.raises(InvalidTag):  # bound to its subject: another's opener cannot open it
        keyring.subject_opener(other)(values[0])
    keyring.erase(subject)
    assert [keyring.subject_opener(subject)(v) for v in values] == [ERASED, ERASED, "plain", ERASED]


def test_a_sealed_value_tells_its_plaintext_s_size() -> None:
    """What a conversation's text bound counts, unopened (`codec.text_size`)."""
    keyring, subject = Keyring(MemoryKeyStore()), uuid4()
    for text in ("", "a", "ab", "abc", "abcd", "é", "😀 ok", "x" * 65_536):
        assert text_size(keyring.encrypt(subject, text)) == len(text.encode()), text


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


class _CountingStore(MemoryKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def load(self, subject: UUID) -> bytes | None:
        self.loads += 1
        return super().load(subject)


AS_OF = datetime(2026, 12, 5, tzinfo=UTC)  # the store's time at a check (unused here)


def test_a_key_is_trusted_past_its_cache_time_only_while_erasure_checks_keep_coming() -> None:
    store, clock = _CountingStore(), Clock(1000.0)
    keyring, subject = Keyring(store, clock=clock), uuid4()
    keyring.checked(clock.now, AS_OF, [])
    clock.now += 0.1
    keyring.encrypt(subject, "Ada")  # fetched (and made) after the first check
    for _ in range(10):
        clock.now += 1.0
        keyring.checked(clock.now, AS_OF, [])
        keyring.encrypt(subject, "Ada")
    assert store.loads == 1  # ten seconds on, never fetched again
    clock.now += KEY_CACHE_SECONDS  # no check since (the store unreachable, say)
    keyring.encrypt(subject, "Ada")
    assert store.loads == 2


def test_a_keyring_holds_at_most_keys_held_keys_the_longest_held_going_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keyring_module, "KEYS_HELD", 3)
    store, clock = _CountingStore(), Clock(1000.0)
    keyring = Keyring(store, clock=clock)
    keyring.checked(clock.now, AS_OF, [])  # keys trusted while checks come: held for good
    subjects = [uuid4() for _ in range(4)]
    for subject in subjects[:3]:
        keyring.encrypt(subject, "Ada")
    assert [keyring.known_erased(s) for s in subjects] == [False, False, False, None]
    keyring.remember(subjects[3], store.create(subjects[3], new_data_key()))  # fetched elsewhere
    assert [keyring.known_erased(s) for s in subjects] == [None, False, False, False]
    loads = store.loads
    sealed = keyring.encrypt(subjects[0], "Ada")  # fetched again
    assert store.loads == loads + 1
    assert keyring.decrypt(subjects[0], sealed) == "Ada"
    assert [keyring.known_erased(s) for s in subjects] == [False, None, False, False]


def test_a_key_fetched_before_the_first_erasure_check_expires_as_without_checks() -> None:
    store, clock = _CountingStore(), Clock(1000.0)
    keyring, subject = Keyring(store, clock=clock), uuid4()
    keyring.encrypt(subject, "Ada")  # an erasure before the first check could go unseen
    for _ in range(3):
        clock.now += 1.0
        keyring.checked(clock.now, AS_OF, [])
    keyring.encrypt(subject, "Ada")
    assert store.loads == 2


def test_an_erasure_check_makes_another_process_s_erasure_known_and_reports_it_once() -> None:
    store, clock = MemoryKeyStore(), Clock(1000.0)
    keyring, subject, other = Keyring(store, clock=clock), uuid4(), uuid4()
    sealed = keyring.encrypt(subject, "Ada")
    keyring.encrypt(other, "Bob")
    assert keyring.checked(clock.now, AS_OF, []) == set()
    store.destroy(subject)  # another process erased the customer
    assert keyring.decrypt(subject, sealed) == "Ada"  # its key still held: not told yet
    assert keyring.checked(clock.now, AS_OF, [subject]) == {subject}
    assert keyring.decrypt(subject, sealed) == ERASED
    assert keyring.encrypt(subject, "new personal data") == ERASED
    assert (keyring.known_erased(subject), keyring.known_erased(other)) == (True, False)
    assert keyring.checked(clock.now, AS_OF, [subject]) == set()  # known already
    assert keyring.checked_as_of == AS_OF
