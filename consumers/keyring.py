"""Per-customer data keys: crypto-shredding for the right to be forgotten.

Personal fields are sealed with AES-256-GCM under a key that belongs to one customer
(the data subject). The keys live beside the event store, never in the events:
PostgreSQL table `crm_subject_keys` in production, a SQLite file in embedded mode,
a dict in tests. Erasing a customer destroys the key but keeps a tombstone, so the
immutable log stays replayable while its personal fields read as `[erased]` everywhere
(history, rebuilt read models, Kafka payloads), and no new key can resurrect them.

Sealed values look like `enc:v1:<urlsafe base64 of nonce + ciphertext>`. The key
store also keeps the one *search key* under which customer search's blind-index terms
are computed (`consumers.blind_index`).

Key lifetime in memory. Another process may destroy a key at any moment (an erasure
through another API worker or the CLI), so a process never trusts a key it fetched long
ago: cached keys expire after `KEY_CACHE_SECONDS`, unless the process checks for other
processes' erasures (`checked`: an API process on PostgreSQL does, twice a second, in
`services.erasure_watch`), in which case a key is trusted until `KEY_CACHE_SECONDS`
after the latest check. A page of read-model rows is opened with its keys fetched anew,
in one query (`keys_now`), and kept by no one.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.base import ERASED
from domain.codec import SEALED_PREFIX

PREFIX = SEALED_PREFIX
KEY_CACHE_SECONDS = 2.0
"""How long a fetched data key is used before it is fetched again, or, in a process that
checks for erasures, after the latest check: the longest a process may go on sealing or
opening with a key another process has destroyed."""
KEYS_HELD = 100_000
"""The most data keys a keyring holds (~300 bytes each); past it, the longest held goes
and is fetched again when needed. Without a bound an API process trusting keys while
it checks for erasures held the key of every customer it ever served."""


class KeyStore(Protocol):
    """Where data keys live. `None` from `load` means never created or destroyed."""

    def load(self, subject: UUID) -> bytes | None: ...

    def load_many(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        """`load` for many subjects in one round trip: an entry for every subject."""
        ...

    def create(self, subject: UUID, key: bytes) -> bytes | None:
        """Store `key` unless the subject has one or was erased; the key in force, or None."""
        ...

    def destroy(self, subject: UUID) -> None:
        """Leave a tombstone for the key, and the subject's erasure no longer owed."""
        ...

    def destroyed(self, subject: UUID) -> bool:
        """Whether the subject's key was destroyed (erasure), as opposed to never made."""
        ...

    def owe_erasure(self, subject: UUID) -> None:
        """Record that the subject's key is to be destroyed (an erasure is about to be
        stored), unless it was: `owed_erasures` lists it until `destroy`."""
        ...

    def owed_erasures(self) -> list[UUID]:
        """The subjects whose erasure is owed (`services.erasure_sweep` finishes them)."""
        ...

    def drop_owed_erasure(self, subject: UUID, older_than: float) -> None:
        """No longer owe the subject's erasure if it was last owed more than `older_than`
        seconds ago (by the store's clock): its event was never stored."""
        ...

    def search_key(self) -> bytes:
        """The search key (`consumers.blind_index`), created on first use."""
        ...


class MemoryKeyStore:
    """Keys in a dict: for unit tests and throw-away stores."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._keys: dict[UUID, bytes | None] = {}
        self._owed: dict[UUID, float] = {}  # subject -> when its erasure was last owed
        self._clock = clock
        self._lock = threading.Lock()
        self._search: bytes | None = None

    def load(self, subject: UUID) -> bytes | None:
        return self._keys.get(subject)

    def load_many(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        return {subject: self._keys.get(subject) for subject in subjects}

    def create(self, subject: UUID, key: bytes) -> bytes | None:
        with self._lock:
            return self._keys.setdefault(subject, key)

    def destroy(self, subject: UUID) -> None:
        with self._lock:
            self._keys[subject] = None
            self._owed.pop(subject, None)

    def destroyed(self, subject: UUID) -> bool:
        return subject in self._keys and self._keys[subject] is None

    def owe_erasure(self, subject: UUID) -> None:
        with self._lock:
            if not self.destroyed(subject):
                self._owed[subject] = self._clock()

    def owed_erasures(self) -> list[UUID]:
        return list(self._owed)

    def drop_owed_erasure(self, subject: UUID, older_than: float) -> None:
        with self._lock:
            since = self._owed.get(subject)
            if since is not None and since < self._clock() - older_than:
                del self._owed[subject]

    def search_key(self) -> bytes:
        with self._lock:
            if self._search is None:
                self._search = os.urandom(32)
            return self._search


def new_data_key() -> bytes:
    """A fresh customer data key (AES-256)."""
    return AESGCM.generate_key(bit_length=256)


@functools.lru_cache(maxsize=4096)
def _cipher(key: bytes) -> AESGCM:
    """AES-GCM bound to `key`: building one costs about as much as a decryption, and
    a customer's key opens several fields per batch. Bounded, so memory stays flat."""
    return AESGCM(key)


class Keyring:
    """Seals and opens personal fields (the codec's `PersonalDataCipher`), caching keys
    for `KEY_CACHE_SECONDS`.

    Consumers call `preload` with a batch's subjects before opening it: one store
    query instead of one per customer, and "no key" answers (erased customers) are
    remembered for that batch instead of being asked again per field. That batch view
    only serves `decrypt`; `encrypt` never trusts a cached "no key" (the subject may be
    new). `forget` drops a subject from both caches. Erasure is final, so subjects known
    to be erased are remembered for good (`known_erased`). `opener` serves a page of
    read-model rows with keys fetched for it alone.
    """

    def __init__(self, store: KeyStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._clock = clock
        # keys held and subjects erased, by `UUID.int`: a `UUID` hashes in Python (two
        # calls), and a command looks its customer up here several times
        self._cache: OrderedDict[int, tuple[bytes, float]] = OrderedDict()  # oldest first
        self._batch: dict[UUID, bytes | None] = {}
        self._batch_at = 0.0
        self._erased: set[int] = set()
        self._search_key: bytes | None = None
        self._checked_from: float | None = None  # when the first erasure check was sent
        self._checked_at = float("-inf")  # when the latest erasure check was sent
        self.checked_as_of: datetime | None = None  # the store's time at the latest check

    def preload(self, subjects: Iterable[UUID]) -> None:
        """Fetch the keys of `subjects` in one query; they replace the previous batch's."""
        wanted = sorted(s for s in set(subjects) if self._cached(s) is None)
        self._batch = self.store.load_many(wanted) if wanted else {}
        self._batch_at = self._clock()

    def keys_now(self, subjects: Sequence[UUID]) -> Mapping[UUID, bytes | None]:
        """The keys of `subjects` (each once: `sealed_rows.owners`) as the store holds them
        now, fetched in one query and held nowhere: a page of rows is never opened with a
        key another process has destroyed (`sealed_rows.open_cells`). An erased subject's
        is None."""
        return self.store.load_many(subjects) if subjects else {}

    def search_key(self) -> bytes:
        """The search key (kept for the process's life: erasure never destroys it)."""
        if self._search_key is None:
            self._search_key = self.store.search_key()
        return self._search_key

    def encrypt(self, subject: UUID, plaintext: str) -> str:
        key = self._key(subject, create=True)
        if key is None:
            return ERASED
        nonce = os.urandom(12)
        raw = nonce + _cipher(key).encrypt(nonce, plaintext.encode(), subject.bytes)
        return PREFIX + base64.urlsafe_b64encode(raw).decode()

    def decrypt(self, subject: UUID, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            return sealed  # stored before sealing existed, or already erased
        key = self._opening_key(subject)
        return ERASED if key is None else _open(key, subject, sealed)

    def subject_opener(self, subject: UUID) -> Callable[[str], str]:
        """A function opening values of `subject`, as `decrypt` does, with the key held
        now: the key and its cipher are looked up once, for the values one read shows (a
        conversation's thousands of messages). Keep it no longer than that read."""
        return value_opener(subject, self._opening_key(subject))

    def owe_erasure(self, subject: UUID) -> None:
        """Before an erasure's event is stored: its key is owed destruction (`erase`
        pays it), so an erasure whose `erase` fails is found and finished later."""
        self.store.owe_erasure(subject)

    def erase(self, subject: UUID) -> None:
        """Destroy the subject's key: everything sealed with it becomes unreadable."""
        self.store.destroy(subject)
        self.forget(subject)
        self._erased.add(subject.int)

    def known_erased(self, subject: UUID) -> bool | None:
        """Erased (True), holding a fresh key in this process (False), or not known (None)."""
        if subject.int in self._erased:
            return True
        return False if self._cached(subject) is not None else None

    def is_erased(self, subject: UUID) -> bool:
        """Whether the subject's key was destroyed, asking the store when not known."""
        known = self.known_erased(subject)
        if known is not None:
            return known
        if self.store.destroyed(subject):
            self._erased.add(subject.int)
            return True
        return False

    def destroyed(self, subject: UUID) -> bool:
        """Whether the store holds the subject's key destroyed, asked now: unlike
        `is_erased`, which trusts a key this process holds."""
        if self.store.destroyed(subject):
            self._erased.add(subject.int)
            return True
        return False

    def now(self) -> float:
        """This keyring's clock: the time an erasure check is sent, for `checked`."""
        return self._clock()

    def checked(self, sent_at: float, as_of: datetime, erased: Iterable[UUID]) -> set[UUID]:
        """An erasure check sent at `sent_at` (`now()`) read the store as of `as_of` (its
        own clock) and found these subjects' keys destroyed, by any process, since shortly
        before the previous check (`checked_as_of`). They are known erased from now on;
        any other key held was still in force when the check was sent, so a key fetched
        after the first check is trusted until `KEY_CACHE_SECONDS` after the latest one.
        Returns the subjects this process had not known erased."""
        news = {subject for subject in erased if subject.int not in self._erased}
        for subject in news:
            self.forget(subject)
            self._erased.add(subject.int)
        if self._checked_from is None:
            self._checked_from = sent_at
        self._checked_at = max(self._checked_at, sent_at)
        self.checked_as_of = as_of
        return news

    def missing(self, subjects: Iterable[UUID]) -> list[UUID]:
        """Those of `subjects` whose key this process holds neither as a key nor as
        destroyed: an async reader fetches them itself and hands them to `remember`."""
        erased = self._erased
        return [s for s in subjects if s.int not in erased and self._cached(s) is None]

    def remember(self, subject: UUID, key: bytes | None) -> None:
        """A key read from the store elsewhere; None: its row says it was destroyed."""
        if key is None:
            self._erased.add(subject.int)
            self._cache.pop(subject.int, None)
        else:
            self._hold(subject, key)

    def forget(self, subject: UUID) -> None:
        """Drop a cached key (another process erased it)."""
        self._cache.pop(subject.int, None)
        self._batch.pop(subject, None)

    def _cached(self, subject: UUID) -> bytes | None:
        """The cached key, unless it is stale (`_trusted`)."""
        entry = self._cache.get(subject.int)
        if entry is None:
            return None
        key, fetched = entry
        if self._trusted(fetched):
            return key
        self._cache.pop(subject.int, None)
        return None

    def _trusted(self, fetched: float) -> bool:
        """A key fetched at `fetched` is used for `KEY_CACHE_SECONDS`, or as long as
        erasure checks keep coming if it was fetched after the first (an older key may
        have been destroyed before this process checked)."""
        now = self._clock()
        if now - fetched < KEY_CACHE_SECONDS:
            return True
        first = self._checked_from
        return first is not None and fetched >= first and now - self._checked_at < KEY_CACHE_SECONDS

    def _opening_key(self, subject: UUID) -> bytes | None:
        """The key to open the subject's values with: the batch's, else `_key`'s."""
        if subject in self._batch and self._clock() - self._batch_at < KEY_CACHE_SECONDS:
            return self._batch[subject]
        return self._key(subject, create=False)

    def _key(self, subject: UUID, *, create: bool) -> bytes | None:
        key = self._cached(subject)
        if key is None and subject.int in self._erased:
            return None  # destroyed for good: no need to ask the store again
        if key is None:
            key = self.store.load(subject)
            if key is None and create:
                key = self.store.create(subject, new_data_key())
            if key is not None:
                self._hold(subject, key)
        return key

    def _hold(self, subject: UUID, key: bytes) -> None:
        """Hold `subject`'s key as fetched now, within `KEYS_HELD` (each step is atomic
        under the GIL: other threads may hold keys at the same time)."""
        cache = self._cache
        cache[subject.int] = (key, self._clock())
        while len(cache) > KEYS_HELD:
            try:
                cache.popitem(last=False)
            except KeyError:  # another thread emptied it meanwhile
                break


def value_opener(subject: UUID, key: bytes | None) -> Callable[[str], str]:
    """Opens values of `subject` sealed under `key`; plaintext passes through. Without a
    key (destroyed, or never made) a sealed value opens as `ERASED`. The cipher and the
    associated data are made once, and `_opened` is written out in the function, since a
    page or a long conversation opens hundreds of values with it: a call or a global
    lookup less is a tenth of a value's cost."""
    if key is None:
        return _erased
    decrypt, associated = _cipher(key).decrypt, subject.bytes
    prefix, start, table, unbase64 = PREFIX, len(PREFIX), _FROM_URLSAFE, binascii.a2b_base64

    def open_value(value: str) -> str:
        if not value.startswith(prefix):
            return value
        raw = unbase64(value[start:].encode().translate(table))
        return decrypt(raw[:12], raw[12:], associated).decode()

    return open_value


def _open(key: bytes, subject: UUID, sealed: str) -> str:
    return _opened(_cipher(key).decrypt, subject.bytes, sealed)


def _erased(value: str) -> str:
    return ERASED if value.startswith(PREFIX) else value


def _opened(decrypt: Callable[[bytes, bytes, bytes], bytes], associated: bytes, sealed: str) -> str:
    """A sealed value's plaintext: nonce (12 bytes) and ciphertext, bound to its subject."""
    raw = _unbase64(sealed)
    return decrypt(raw[:12], raw[12:], associated).decode()


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _unbase64(sealed: str) -> bytes:
    """The nonce and ciphertext of a sealed value (`base64.urlsafe_b64decode`, without
    its argument checks: a third of the cost of opening a short value)."""
    return binascii.a2b_base64(sealed[len(PREFIX) :].encode().translate(_FROM_URLSAFE))
