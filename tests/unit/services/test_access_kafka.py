"""The Kafka comparison of `crm audit verify-access --kafka`, over records held in memory.

Records are built as the relay's access publisher builds them (key = the position in
decimal, value = the record as stored), then tampered with as someone with write access
to the store (or to the broker) could: the store's tail removed, a record rewritten, a
record slipped in under a key the relay never writes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from consumers.kafka_records import Record
from domain.chain_walk import Break, BreakKind, Entry
from services.access_kafka import AccessKafkaComparison
from services.access_log import AccessRecord, canonical, encode

TOPIC = "p.crm.access.v1"


def access_record(n: int) -> bytes:
    """The `n`th of a run of records, as the store holds it (read by principal `p{n}`)."""
    return encode(AccessRecord(
        at=datetime(2025, 1, 1, 0, n, tzinfo=UTC), principal=f"p{n}", role="manager",
        route="GET /v1/customers/{customer_id}", customers=[uuid.uuid4()], fields=["email"],
    ))  # fmt: skip


def _stored(count: int = 5) -> list[tuple[int, bytes]]:
    """`count` access records as the store holds them, at positions 1..count."""
    return [(position, access_record(position)) for position in range(1, count + 1)]


def _entries(stored: list[tuple[int, bytes]]) -> list[Entry]:
    return [(position, canonical(position, record)) for position, record in stored]


def _records(stored: list[tuple[int, bytes]]) -> list[Record]:
    """What `services.access_topic.AccessPublisher` sends: one partition, in order."""
    return [
        Record(TOPIC, 0, offset, str(position).encode(), record)
        for offset, (position, record) in enumerate(stored)
    ]


def _compare(records: list[Record], stored: list[tuple[int, bytes]]) -> Break | None:
    """As verify-access runs it: every page, then what is left past the store's end."""
    comparison = AccessKafkaComparison(records)
    last = stored[-1][0] if stored else 0
    return comparison.compare(_entries(stored)) or comparison.finish(1, last, 1 << 62)


def test_records_as_published_match_duplicates_included() -> None:
    stored = _stored()
    records = _records(stored)
    again = [r._replace(offset=r.offset + 5) for r in records[2:]]  # re-sent after a failure
    assert _compare(records + again, stored) is None


def test_a_tail_not_yet_published_is_fine() -> None:
    stored = _stored()
    assert _compare(_records(stored[:3]), stored) is None
    assert _compare([], stored) is None


def test_a_record_past_the_stores_end_is_a_deletion() -> None:
    stored = _stored()
    broken = _compare(_records(stored), stored[:3])  # the store's last two removed
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.DELETED, 4)
    assert "which now ends at 3" in broken.detail


def test_a_record_at_a_position_the_store_lacks_is_a_deletion() -> None:
    """Record 3 removed and the chain relinked over the gap (links are not keyed)."""
    stored = _stored()
    broken = _compare(_records(stored), [*stored[:2], *stored[3:]])
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.DELETED, 3)
    assert "lacks that position" in broken.detail


def test_a_record_that_differs_from_the_store_is_an_edit() -> None:
    stored = _stored()
    records = _records(stored)
    records[1] = records[1]._replace(value=records[1].value.replace(b"p2", b"p9"))
    broken = _compare(records, stored)
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 2)
    assert f"Kafka record {TOPIC}[0]@1 differs" in broken.detail


def test_a_duplicate_that_differs_is_an_edit() -> None:
    stored = _stored()
    records = _records(stored)
    forged = records[3]._replace(offset=9, value=records[3].value.replace(b"p4", b"p1"))
    broken = _compare([*records, forged], stored)
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 4)


def test_a_stored_record_missing_between_published_ones_is_a_deletion() -> None:
    stored = _stored()
    records = _records(stored)
    broken = _compare([*records[:2], *records[3:]], stored)
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.DELETED, 3)
    assert "no record on Kafka carries it" in broken.detail


def test_the_store_renumbered_after_a_removal_is_an_edit() -> None:
    """Record 2 removed, the later ones moved down a position and relinked: what the
    store now holds at 2 is not what was published at 2."""
    stored = _stored()
    renumbered = [stored[0], *[(p - 1, record) for p, record in stored[2:]]]
    broken = _compare(_records(stored), renumbered)
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 2)


@pytest.mark.parametrize(
    "key", [None, b"", b"x", b"0", b"-1", b"03", b"+3", b" 3", b"\xd9\xa3", b"9" * 5000]
)
def test_a_key_the_relay_never_writes_is_an_insertion_not_a_traceback(key: bytes | None) -> None:
    stored = _stored()
    slipped = Record(TOPIC, 0, 5, key, stored[2][1])
    broken = _compare([*_records(stored), slipped], stored)
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.INSERTED, 0)
    assert f"{TOPIC}[0]@5" in broken.detail
    assert len(broken.detail) < 200  # a long key is not repeated whole


def test_a_key_the_relay_never_writes_is_named_on_an_empty_store_too() -> None:
    broken = _compare([Record(TOPIC, 0, 0, b"x", b"{}")], [])
    assert broken is not None
    assert broken.kind is BreakKind.INSERTED


UNREADABLE = "unreadable record: [Error 2] CorruptRecordError: Found invalid record structure"


def test_a_record_kafka_python_could_not_parse_is_an_insertion() -> None:
    stored = _stored()
    unreadable = Record(TOPIC, 0, 5, None, b"", (), UNREADABLE)
    broken = _compare([*_records(stored), unreadable], stored)
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.INSERTED, 0)
    assert f"{TOPIC}[0]@5: {UNREADABLE}" in broken.detail


def test_a_tombstone_at_a_stored_position_is_an_edit() -> None:
    """A null value is read as an empty one (`consumers.kafka_io`)."""
    stored = _stored()
    broken = _compare([*_records(stored), Record(TOPIC, 0, 5, b"2", b"")], stored)
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 2)
