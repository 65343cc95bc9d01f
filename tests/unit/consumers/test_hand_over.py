"""What the runner hands a writer: events it need not open pass through as they
arrived; the writer then decodes exactly the events a full read would give."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.workload import Workload
from consumers import kafka_io
from consumers.envelope import delivered, from_cloudevent
from consumers.hand_over import hand_over
from consumers.kafka_records import Record
from consumers.keyring import Keyring
from consumers.writer_messages import Batch, encoder, items_of
from consumers.writer_process import _batch as writer_batches
from domain import codec
from projections import PROJECTIONS
from tests.unit.consumers.published import MemoryStoredEvents, published

EVENTS = list(Workload(seed=12).events(2500))
Published = tuple[list[Record], Keyring, MemoryStoredEvents]


@pytest.fixture(scope="module", name="published")
def published_events() -> Published:
    return published(EVENTS)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_the_writer_decodes_what_a_full_read_gives(name: str, published: Published) -> None:
    records, keyring, stored = published
    fields = PROJECTIONS[name].personal_inputs
    events = [i.event for i in items_of(hand_over(records, keyring, stored, fields))]
    full = [from_cloudevent(r.value)[0] for r in records]
    expected = [codec.unseal(e, keyring, set(e.personal_fields) & fields) for e in full]
    assert events == expected
    assert sum(e != f for e, f in zip(events, full, strict=True)) > 0 or not fields


def test_a_projection_that_opens_nothing_gets_the_events_as_they_arrived(
    published: Published,
) -> None:
    records, keyring, stored = published
    handed = hand_over(records, keyring, stored, PROJECTIONS["stats"].personal_inputs)
    arrived = [bytes(delivered(r.value).data) for r in records]
    assert [h.event for h in handed] == arrived


HOSTILE = [
    b"not a cloudevent", b"", b"null", b'{"specversion": "0.3"}', b'{"specversion": "\xff"}',
    None,
]  # fmt: skip
"""Values anyone who can produce to the topics can write (None: a tombstone)."""


def _consumed(value: bytes | None) -> Record:
    """The record as `consumers.kafka_io` hands it out (kafka-python's has these fields)."""
    message = SimpleNamespace(topic="t", partition=0, offset=99, key=None, value=value, headers=[])
    return kafka_io._record(message)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_record_that_is_no_cloudevent_is_refused(
    value: bytes | None, published: Published
) -> None:
    _, keyring, stored = published
    (item,) = items_of(hand_over([_consumed(value)], keyring, stored, frozenset({"name"})))
    assert (item.event, item.refused, item.position, item.origin) == (None, True, 0, None)
    assert item.error is not None
    assert item.error.startswith("InvalidEnvelope: not a CloudEvent of this contract")


@pytest.mark.parametrize("value", HOSTILE)
def test_a_refused_record_crosses_to_the_writer_process(
    value: bytes | None, published: Published
) -> None:
    """The runner sends each batch to its writer process as msgpack (`Batch`): a refused
    record must arrive as it was handed over (a tombstone's None once stopped the writer,
    and with it `crm consume`, for good)."""
    _, keyring, stored = published
    handed = hand_over([_consumed(value)], keyring, stored, frozenset({"name"}))
    arrived = writer_batches.decode(encoder.encode(Batch(7, handed)))
    assert arrived == Batch(7, handed)
    assert arrived.handed[0].value == (value or b"")


def test_a_record_kafka_python_could_not_parse_is_refused_saying_so(
    published: Published,
) -> None:
    _, keyring, stored = published
    why = "unreadable record: [Error 2] CorruptRecordError: Found invalid record structure"
    unreadable = Record("t", 0, 99, None, b"", (), why)
    handed = hand_over([unreadable], keyring, stored, frozenset({"name"}))
    (item,) = items_of(writer_batches.decode(encoder.encode(Batch(0, handed))).handed)
    assert (item.event, item.refused, item.offset, item.error) == (None, True, 99, why)
