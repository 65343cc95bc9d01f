"""A consumer hands over only records the event store holds at their positions: forged
ones (a share nobody made, a genuine record's data changed, a huge version, a position
the store never held, a type or schema version relabelled) are refused, while
records of events stored in an older schema version pass both as the relay of their
time published them and as today's relay does (upcast)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import msgspec
import psycopg
import pytest

from consumers.as_stored import Held, mismatches
from consumers.envelope import CloudEvent, delivered, read_cloudevent
from consumers.hand_over import hand_over
from consumers.kafka_records import Record
from consumers.keyring import Keyring
from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.writer_messages import items_of
from domain import codec
from domain.customer import CustomerShared
from tests.unit.consumers.published import MemoryStoredEvents, Notification, published, record
from tests.unit.domain.factories import CONVERSATION_ID, ctx, customer

GOLDEN = Path(__file__).parents[1] / "golden"


def _genuine() -> tuple[list[Record], Keyring, MemoryStoredEvents]:
    """A customer registered (position 1) and tagged twice (2, 3), as relayed."""
    ada = customer()
    for tag in ("gold", "vip"):
        ada.tag(ctx(minutes=5), tag)
    return published(ada.collect_events())


def _rewritten(value: bytes, **changes: object) -> bytes:
    envelope: CloudEvent = read_cloudevent(value)
    return msgspec.json.encode(msgspec.structs.replace(envelope, **changes))


def _forged_share(keyring: Keyring, version: int, position: int) -> bytes:
    """A `CustomerShared` with the forger's department that the store never held."""
    share = CustomerShared(
        originator_id=customer().id, originator_version=version, occurred_at=ctx().occurred_at,
        actor="intruder", actor_department="marketing", correlation_id="x",
        department="marketing",
    )  # fmt: skip
    state = codec.encode(codec.seal(share, keyring))
    held = Notification(position, share.originator_id, version, "CustomerShared@1", state)
    return record(held, offset=9).value


def _reasons(values: list[bytes], stored: MemoryStoredEvents) -> list[str | None]:
    return mismatches([delivered(value) for value in values], stored)


def test_records_as_the_relay_publishes_them_pass_in_one_query() -> None:
    records, _, stored = _genuine()
    assert _reasons([r.value for r in records] * 2, stored) == [None] * 6  # re-sent too
    assert stored.queries == 1


def test_a_forged_event_is_not_as_stored() -> None:
    _, keyring, stored = _genuine()
    at_a_genuine_position = _forged_share(keyring, version=4, position=3)
    huge_version_nowhere = _forged_share(keyring, version=2**40, position=4)
    assert _reasons([at_a_genuine_position, huge_version_nowhere], stored) == [
        "not as stored at position 3: it is a CustomerShared in schema version 1; the event"
        " store holds a CustomerTagged in schema version 1",
        "not as stored at position 4: the event store holds no event there",
    ]


def test_a_genuine_record_with_its_data_changed_is_not_as_stored() -> None:
    records, _, stored = _genuine()
    data = bytes(read_cloudevent(records[1].value).data).replace(b'"gold"', b'"vip!"')
    changed = _rewritten(records[1].value, data=msgspec.Raw(data))
    (reason,) = _reasons([changed], stored)
    assert reason == "not as stored at position 2: its data differs from the stored CustomerTagged"


def test_a_record_relabelled_or_moved_is_not_as_stored() -> None:
    records, _, stored = _genuine()
    value = records[1].value
    forged = [
        _rewritten(value, type="CustomerUntagged"),
        _rewritten(value, schemaversion=2),
        _rewritten(value, position=3),  # a genuine event at another's position
        _rewritten(value, position=0),
        _rewritten(value, position=-1),
        _rewritten(value, position=2**64 - 1),  # past any bigint: not even asked
    ]
    reasons = _reasons(forged, stored)
    assert all(reason is not None for reason in reasons), reasons
    assert reasons[3] == "not as stored at position 0: the event store holds no event there"


def _old_conversation_closed() -> tuple[MemoryStoredEvents, Record]:
    """A `ConversationClosed` stored in schema version 1 at position 1, and its record
    as today's relay publishes it (upcast to version 2)."""
    old = json.loads((GOLDEN / "ConversationClosed@1.json").read_text())
    stored = MemoryStoredEvents()
    held = stored.hold(Notification(1, CONVERSATION_ID, 7, old["topic"], old["state"].encode()))
    return stored, record(held, 0)


def test_an_event_stored_in_an_older_schema_passes_upcast_and_as_stored() -> None:
    stored, today = _old_conversation_closed()
    state = stored.events[1].state
    then = _rewritten(today.value, data=msgspec.Raw(state), schemaversion=1)
    assert delivered(today.value).schemaversion == 2
    assert _reasons([today.value, then], stored) == [None, None]
    assert stored.queries == 2  # what is held, then the old event's state


def test_an_event_stored_in_an_older_schema_with_its_data_changed_is_not_as_stored() -> None:
    stored, today = _old_conversation_closed()
    data = bytes(read_cloudevent(today.value).data).replace(b'"resolved"', b'"escalated"')
    garbage = b'{"type":"ConversationClosed"}'
    reasons = _reasons(
        [
            _rewritten(today.value, data=msgspec.Raw(data)),
            _rewritten(today.value, data=msgspec.Raw(garbage)),
            _rewritten(today.value, data=msgspec.Raw(garbage), schemaversion=0),  # no upcaster
        ],
        stored,
    )
    differs = (
        "not as stored at position 1: its data differs from the stored ConversationClosed"
        " (stored in schema version 1, compared decoded)"
    )
    assert reasons == [differs, differs, differs]


def test_hand_over_refuses_a_forged_record_which_touches_no_version() -> None:
    records, keyring, stored = _genuine()
    forged = Record("t", 0, 3, None, _forged_share(keyring, version=2**40, position=99))
    items = items_of(hand_over([*records, forged], keyring, stored, frozenset()))
    assert [(i.event is None, i.refused) for i in items] == [(False, False)] * 3 + [(True, True)]
    assert items[3].error == "not as stored at position 99: the event store holds no event there"
    assert (items[3].position, items[3].origin) == (0, None)
    assert stored.queries == 1


class _Unreachable(MemoryStoredEvents):
    def held(self, positions: Sequence[int]) -> dict[int, Held]:
        raise psycopg.OperationalError("connection refused")


def test_an_unreachable_store_raises_for_the_runner_to_wait_it_out() -> None:
    records, keyring, _ = _genuine()
    with pytest.raises(DATABASE_UNAVAILABLE):
        hand_over(records, keyring, _Unreachable(), frozenset())
