"""The Kafka comparison of `crm audit verify --kafka`, over records held in memory.

Records are built as the relay builds them (or as an older relay did, for an event
stored in an older schema version), then tampered with as someone with broker access
could: rewritten, dropped, slipped in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest

from consumers.envelope import CloudEvent, read_cloudevent
from consumers.kafka_records import Record
from consumers.relay import encode_notification
from domain.chain_walk import BreakKind, Entry
from domain.codec import CodecMapper
from domain.hashchain import canonical_event
from services.audit_kafka import KafkaComparison
from tests.unit.domain.factories import CONVERSATION_ID, ctx, customer

GOLDEN = Path(__file__).parents[1] / "golden"


class _Stored(msgspec.Struct, frozen=True):
    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


def _log() -> list[_Stored]:
    """Three events of a customer at positions 1..3 and a conversation closed in schema
    version 1 (stored long ago) at position 4."""
    ada = customer()
    for tag in ("gold", "vip"):
        ada.tag(ctx(minutes=5), tag)
    mapper = CodecMapper()
    stored = [mapper.to_stored_event(event) for event in ada.collect_events()]
    old = json.loads((GOLDEN / "ConversationClosed@1.json").read_text())
    rows = [
        _Stored(i, s.originator_id, s.originator_version, s.topic, s.state)  # type: ignore[arg-type]
        for i, s in enumerate(stored, start=1)
    ]
    return [*rows, _Stored(4, CONVERSATION_ID, 7, old["topic"], old["state"].encode())]


def _entries(log: list[_Stored]) -> list[Entry]:
    return [
        (s.id, canonical_event(s.id, s.originator_id, s.originator_version, s.topic, s.state))
        for s in log
    ]


def _records(log: list[_Stored]) -> list[Record]:
    """What the relay publishes today; the old event as the relay of its time did."""
    records = []
    for offset, stored in enumerate(log):
        topic, key, value = encode_notification(stored, "p.")
        if stored.topic.endswith("@1") and stored.topic.startswith("ConversationClosed"):
            old = read_cloudevent(value)
            value = msgspec.json.encode(
                msgspec.structs.replace(old, data=msgspec.Raw(stored.state), schemaversion=1)
            )
        records.append(Record(topic, 0, offset, key, value))
    return records


def _compare(records: list[Record], log: list[_Stored], relay: int | None = None) -> Any:
    comparison = KafkaComparison(records, "p.", relay)
    return comparison.compare(_entries(log)) or comparison.finish(1, log[-1].id, 1 << 62)


def test_records_as_published_match_duplicates_and_older_schemas_included() -> None:
    log = _log()
    records = _records(log)
    assert _compare([*records, records[1]], log) is None


def _rewritten(records: list[Record], index: int, **changes: Any) -> list[Record]:
    """`records`, the one at `index` with its envelope's attributes changed."""
    envelope: CloudEvent = read_cloudevent(records[index].value)
    forged = msgspec.structs.replace(envelope, **changes)
    return [*records[:index], records[index]._replace(value=msgspec.json.encode(forged)),
            *records[index + 1 :]]  # fmt: skip


def test_a_rewritten_record_is_an_edit() -> None:
    log = _log()
    broken = _compare(_rewritten(_records(log), 2, actor="intruder"), log)
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 3)


def test_a_dropped_record_is_a_deletion_unless_the_relay_is_not_there_yet() -> None:
    log = _log()
    records = _records(log)
    broken = _compare(records[:1] + records[2:], log)
    assert (broken.kind, broken.position) == (BreakKind.DELETED, 2)
    assert _compare(records[:2], log, relay=2) is None  # positions 3, 4 not published yet


def test_a_record_for_a_position_the_store_never_held_is_an_insertion() -> None:
    log = _log()
    records = _records(log)
    del log[2]  # the store has positions 1, 2, 4: position 3 was never committed
    broken = _compare(records, log)
    assert (broken.kind, broken.position) == (BreakKind.INSERTED, 3)


def test_a_record_past_the_end_of_the_store_is_a_deletion_from_the_store() -> None:
    log = _log()
    records = _records(log)
    broken = _compare(records, log[:2])
    assert (broken.kind, broken.position) == (BreakKind.DELETED, 3)
    assert "which now ends at 2" in broken.detail


def test_an_older_schemas_record_relabelled_as_another_type_is_an_edit() -> None:
    """Its data as stored, but its `type` another event's: a consumer would decode it as
    that event (`consumers.as_stored` refuses it, by the same rule)."""
    log = _log()
    broken = _compare(_rewritten(_records(log), 3, type="ConversationReopened"), log)
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 4)


def _moved(record: Record, partition: int, offset: int) -> Record:
    return record._replace(partition=partition, offset=offset)


def test_a_genuine_record_copied_into_another_partition_is_an_insertion() -> None:
    log = _log()
    records = _records(log)
    broken = _compare([*records, _moved(records[2], 1, 0)], log)
    assert (broken.kind, broken.position) == (BreakKind.INSERTED, 3)
    assert "is in partition 1, the aggregate's other records in 0" in broken.detail


def test_a_genuine_record_copied_ahead_of_the_versions_it_follows_is_an_insertion() -> None:
    """Consumers reading it there would reject it (out of order); the audit finds it
    however the consumers read it. The relay's re-sends, from an earlier version again,
    are no such thing."""
    log = _log()
    v1, v2, v3, closed = _records(log)
    assert _compare([v1, v2, v3, v2, v3, closed], log) is None
    for order, detail in (
        ([v3, v1, v2, v3], "version 1) comes after version 3 in its partition: that one is"),
        ([v1, v3, v2, v3], "version 3) comes before version 2 in its partition: it is a copy"),
    ):
        broken = _compare([*order, closed], log)
        assert (broken.kind, broken.position) == (BreakKind.INSERTED, 1 if order[0] is v3 else 3)
        assert detail in broken.detail


@pytest.mark.parametrize(
    ("value", "unreadable", "said"),
    [
        (b"", None, "no value (empty, or null: a tombstone)"),
        (b'{"specversion": "\xff"}', None, "can't decode byte 0xff"),
        (b"", "unreadable record: [Error 2] CorruptRecordError", "CorruptRecordError"),
    ],
    ids=["tombstone", "not-utf8", "unreadable"],
)
def test_a_record_that_is_no_cloudevent_is_an_insertion_not_a_traceback(
    value: bytes, unreadable: str | None, said: str
) -> None:
    """A tombstone (read as `b""`: `consumers.kafka_io`), a value that is not UTF-8, a
    record kafka-python could not parse."""
    log = _log()
    slipped = Record("p.crm.customer.v1", 0, 9, b"k", value, (), unreadable)
    broken = _compare([*_records(log), slipped], log)
    assert (broken.kind, broken.position) == (BreakKind.INSERTED, 0)
    assert "Kafka record p.crm.customer.v1[0]@9: " in broken.detail
    assert said in broken.detail


def test_a_record_that_is_no_cloudevent_is_named_on_an_empty_store_too() -> None:
    """A walk of an empty store compares no page: `finish` reports it."""
    slipped = Record("p.crm.customer.v1", 0, 0, b"k", b"")
    broken = KafkaComparison([slipped], "p.", None).finish(1, 0, 1 << 62)
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.INSERTED, 0)
