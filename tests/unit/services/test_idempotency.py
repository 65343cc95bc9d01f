"""The pure parts of Idempotency-Key handling: what `begin` answers from a key's row, the
ids a keyed creation derives, which events a dead attempt emitted and the answer rebuilt
from them, and the lease and retention settings."""

from __future__ import annotations

import uuid
from datetime import timedelta

import msgspec
import pytest

from domain.base import Context, DomainEvent
from domain.conversation import Conversation
from domain.customer import Customer
from services.idempotency import (
    IdempotencyError,
    Reservation,
    StoredAnswer,
    check_key,
    created_id,
    outcome,
)
from services.idempotency_recovery import attempt_events, recovered_result
from services.idempotency_store import KeyRow
from services.settings import ConfigError, load_settings
from tests.unit.domain.factories import CONVERSATION_ID, CUSTOMER_ID, T0, ctx

DIGEST = "hmac:" + "0" * 32
ATTEMPT = Reservation(
    owner="ann",
    key="k-1",
    holder="mine",
    reservation=uuid.uuid4(),
    reserved_at=100.0,
    recovering=False,
    event_key=DIGEST,
)


def row(**changes: object) -> KeyRow:
    fields: dict[str, object] = {
        "fingerprint": "request",
        "status": None,
        "body": None,
        "holder": "mine",
        "reservation": str(ATTEMPT.reservation),
        "reserved_at": 100.0,
    }
    return KeyRow(**(fields | changes))  # type: ignore[arg-type]  # a test's field mix


def refusal(key_row: KeyRow | None, request: str = "request") -> str:
    with pytest.raises(IdempotencyError) as refused:
        outcome(key_row, request, ATTEMPT)
    return refused.value.reason


def test_a_new_reservation_is_held_and_not_recovering() -> None:
    assert outcome(row(), "request", ATTEMPT) == ATTEMPT


def test_a_key_taken_over_keeps_its_reservation_and_time_and_recovers() -> None:
    first = uuid.uuid4()
    held = outcome(row(reservation=str(first), reserved_at=40.0), "request", ATTEMPT)
    assert isinstance(held, Reservation)
    assert (held.reservation, held.reserved_at, held.recovering) == (first, 40.0, True)
    assert held.holder == "mine"


def test_a_key_held_by_another_holder_is_in_use() -> None:
    assert refusal(row(holder="theirs")) == "idempotency-key-in-use"
    assert refusal(None) == "idempotency-key-in-use"  # released meanwhile: try again


def test_a_completed_key_answers_what_it_stored() -> None:
    done = row(holder="theirs", status=201, body=b"{}")
    assert outcome(done, "request", ATTEMPT) == StoredAnswer(201, b"{}")


def test_a_different_request_is_refused_whatever_the_key_state() -> None:
    for key_row in (row(), row(holder="theirs"), row(status=201, body=b"{}")):
        assert refusal(key_row, "another request") == "idempotency-key-reused"


def test_created_ids_are_stable_per_reservation_and_differ_per_principal_key_reservation() -> None:
    reservation = uuid.uuid4()
    same = created_id(reservation, "ann", "k-1")
    assert same == created_id(reservation, "ann", "k-1")
    others = {
        created_id(reservation, "bob", "k-1"),
        created_id(reservation, "ann", "k-2"),
        created_id(uuid.uuid4(), "ann", "k-1"),
    }
    assert same not in others
    assert len(others) == 3


@pytest.mark.parametrize("key", ["", "x" * 201, "caf\u00e9", "tab\there", "a, b", "a,b"])
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(IdempotencyError) as refused:
        check_key(key)
    assert refused.value.reason == "bad-idempotency-key"


def events_of(actor: str, key: str | None, minutes: int) -> list[DomainEvent]:
    context = Context(
        actor=actor,
        actor_department="sales",
        occurred_at=T0 + timedelta(minutes=minutes),
        correlation_id="c",
        idempotency_key=key,
    )
    customer = Customer.register(
        context, customer_id=CUSTOMER_ID, name="Ada", owner_department="sales"
    )
    customer.tag(context, "vip")
    return customer.collect_events()


def test_an_attempts_events_are_its_principals_with_its_key_since_its_reservation() -> None:
    mine = events_of("ann", DIGEST, 10)
    noise = [
        *events_of("bob", DIGEST, 10),  # another principal's key
        *events_of("ann", "hmac:" + "1" * 32, 10),  # another key
        *events_of("ann", None, 10),  # no key
        *events_of("ann", DIGEST, 0),  # an older, forgotten use of the key
    ]
    found = attempt_events([*noise, *mine], ATTEMPT, T0 + timedelta(minutes=5))
    assert found == mine


def test_an_attempts_events_stored_before_digests_hold_its_key_as_sent() -> None:
    """An attempt in flight across the upgrade wrote the key as sent; its retry, by the
    new release, finds them, and another key as sent or another principal's are not."""
    mine = events_of("ann", "k-1", 10)
    noise = [*events_of("bob", "k-1", 10), *events_of("ann", "k-2", 10)]
    found = attempt_events([*noise, *mine], ATTEMPT, T0 + timedelta(minutes=5))
    assert found == mine


def test_the_recovered_answer_is_the_last_events_version_position_and_extras() -> None:
    registered = events_of("ann", "k-1", 0)
    customer = Customer.blank(CUSTOMER_ID)
    for event in registered:
        event.mutate(customer)
    conversation = Conversation.open(
        ctx(), conversation_id=CONVERSATION_ID, customer=customer, channel="email", subject="Hi"
    )
    conversation.log_message(ctx(), message_id="m-7", direction="inbound", author="A", content="x")
    logged = conversation.collect_events()
    result = recovered_result(logged, 42, ("message_id",))
    assert (result.id, result.version, result.position) == (CONVERSATION_ID, 2, 42)
    assert result.message_id == "m-7"
    plain = recovered_result(registered, 7, ("message_id",))  # not a field of these events
    assert (plain.id, plain.version, plain.position) == (CUSTOMER_ID, 2, 7)
    assert plain.message_id is msgspec.UNSET


def test_lease_and_retention_default_to_30_seconds_and_24_hours() -> None:
    settings = load_settings({})
    assert settings.idempotency_lease_seconds == 30
    assert settings.idempotency_retention_seconds == 24 * 3600
    tuned = load_settings(
        {"CRM_IDEMPOTENCY_LEASE_SECONDS": "5", "CRM_IDEMPOTENCY_RETENTION_SECONDS": "3600"}
    )
    assert (tuned.idempotency_lease_seconds, tuned.idempotency_retention_seconds) == (5, 3600)


@pytest.mark.parametrize(
    ("lease", "retention", "named"),
    [
        ("0", "3600", "CRM_IDEMPOTENCY_LEASE_SECONDS"),
        ("abc", "3600", "CRM_IDEMPOTENCY_LEASE_SECONDS"),
        ("30", "59", "CRM_IDEMPOTENCY_RETENTION_SECONDS"),
    ],
)
def test_bad_lease_or_retention_names_the_variable(lease: str, retention: str, named: str) -> None:
    env = {"CRM_IDEMPOTENCY_LEASE_SECONDS": lease, "CRM_IDEMPOTENCY_RETENTION_SECONDS": retention}
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert error.value.setting == named
