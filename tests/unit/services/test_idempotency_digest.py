"""What events carry of an Idempotency-Key: a keyed digest of the principal and the key,
never the key. A client may name a request after its person (`signup-<e-mail>`), and
event metadata is kept for good, unsealed, where no erasure reaches; the digest tells
a reader only which events one keyed command emitted."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from services.access.rules import Principal, Role
from services.commands import Caller
from services.idempotency import Idempotency, Reservation, created_id
from services.idempotency_store import KeyTable, SqliteDatabase

SECRET = b"s" * 32
EMAIL_KEY = "signup-grace.hopper@example.com"
DIGEST = re.compile(r"hmac:[0-9a-f]{32}")


@pytest.fixture
def keys(tmp_path: Path) -> Idempotency:
    return Idempotency(KeyTable(SqliteDatabase(tmp_path / "keys.db")), secret=SECRET)


def other(tmp_path: Path, secret: bytes) -> Idempotency:
    return Idempotency(KeyTable(SqliteDatabase(tmp_path / "other.db")), secret=secret)


def test_an_event_key_is_a_digest_that_holds_nothing_of_the_key(keys: Idempotency) -> None:
    digest = keys.event_key("sam", EMAIL_KEY)
    assert DIGEST.fullmatch(digest), digest
    for part in ("grace", "hopper", "example", "signup", "@", "sam"):
        assert part not in digest


def test_an_event_key_is_the_same_in_every_process_of_a_deployment(
    keys: Idempotency, tmp_path: Path
) -> None:
    assert keys.event_key("sam", "k-1") == keys.event_key("sam", "k-1")
    assert other(tmp_path, SECRET).event_key("sam", "k-1") == keys.event_key("sam", "k-1")


def test_an_event_key_differs_per_principal_key_and_secret(
    keys: Idempotency, tmp_path: Path
) -> None:
    digests = {
        keys.event_key("sam", "k-1"),
        keys.event_key("sue", "k-1"),
        keys.event_key("sam", "k-2"),
        keys.event_key("sam", "k-1 "),
        keys.event_key("sam\nk", "-1"),  # a key holds no newline: no such pair is told apart
        other(tmp_path, b"t" * 32).event_key("sam", "k-1"),
    }
    assert len(digests) == 6


def test_an_event_key_is_not_the_requests_fingerprint(keys: Idempotency) -> None:
    """Another key is derived for each: a digest in an event matches no fingerprint row."""
    assert keys.event_key("sam", "k-1").removeprefix("hmac:") not in {
        keys.fingerprint("POST", "/v1/customers", b"sam\nk-1"),
        keys.fingerprint("", "", b"sam\nk-1"),
    }


def test_a_reservation_carries_the_event_key_of_its_principal_and_key(keys: Idempotency) -> None:
    held = keys.begin("sam", EMAIL_KEY, keys.fingerprint("POST", "/v1/customers", b"{}"))
    assert isinstance(held, Reservation)
    assert held.event_key == keys.event_key("sam", EMAIL_KEY)


def test_a_keyed_callers_events_carry_the_digest_and_its_ids_derive_from_the_key(
    keys: Idempotency,
) -> None:
    principal = Principal(name="sam", department="sales", role=Role.AGENT)
    held = keys.begin("sam", EMAIL_KEY, keys.fingerprint("POST", "/v1/customers", b"{}"))
    assert isinstance(held, Reservation)
    caller = Caller(principal=principal, correlation_id="c").keyed(held)
    context = caller.context()
    assert context.idempotency_key == held.event_key
    assert EMAIL_KEY not in repr(context)
    # the created id is as before: a retry across the upgrade finds what its attempt made
    assert caller.new_id() == created_id(held.reservation, "sam", EMAIL_KEY)
    assert Caller(principal=principal, correlation_id="c").context().idempotency_key is None
    assert isinstance(uuid.UUID(str(caller.new_id())), uuid.UUID)
