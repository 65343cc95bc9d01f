"""What the runner hands a writer: events it need not open pass through as they
arrived; the writer then decodes exactly the events a full read would give."""

from __future__ import annotations

import pytest

from bench.workload import Workload
from consumers.envelope import delivered, from_cloudevent
from consumers.hand_over import hand_over
from consumers.kafka_io import Record
from consumers.keyring import Keyring
from consumers.projection_writer import items_of
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


@pytest.mark.parametrize(
    "value", [b"not a cloudevent", b"", b"null", b'{"specversion": "0.3"}', None]
)
def test_a_record_that_is_no_cloudevent_is_refused(
    value: bytes | None, published: Published
) -> None:
    _, keyring, stored = published
    garbage = Record("t", 0, 99, None, value)  # type: ignore[arg-type]  # a tombstone: None
    (item,) = items_of(hand_over([garbage], keyring, stored, frozenset({"name"})))
    assert (item.event, item.refused, item.position, item.origin) == (None, True, 0, None)
    assert item.error is not None
