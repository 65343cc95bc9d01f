"""What a runner hands its writer: records decoded just enough, search terms derived.

The reader side of a projection consumer (`consumers.runner`): each Kafka record becomes
a `Handed` (`consumers.writer_messages`), its event as current-schema codec JSON (its
personal fields stay sealed: read models store them so) with the blind-index terms of
the projection's search fields, or the error that makes it a dead letter. Events with
nothing to open pass as the bytes they arrived in. A record is handed over to be applied
only if the event store holds it at its position (`consumers.as_stored`): anyone who
can produce to the topics could forge one, and the event store is the one truth. One
that it does not hold is handed over refused (a rejected record, which readiness does
not wait for: `consumers.projecting`).

I/O: the event store (one query per batch, `StoredEvents`) and the keyring's data keys
(one query per batch). Either being unreachable raises (`DATABASE_UNAVAILABLE`): the
runner waits it out with the records in hand, nothing is skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

from consumers import envelope
from consumers.as_stored import StoredEvents, mismatches
from consumers.blind_index import needs_terms, search_terms
from consumers.kafka_records import Consumed, Record
from consumers.keyring import Keyring
from consumers.projecting import Item, Origin, origin_of, reason
from consumers.writer_messages import Handed, items_of
from domain import codec
from domain.base import DomainEvent
from domain.customer import CustomerErased


def hand_over(
    records: Sequence[Consumed],
    keyring: Keyring,
    stored: StoredEvents,
    fields: frozenset[str],
    search: frozenset[str] = frozenset(),
) -> list[Handed]:
    """Records as a writer takes them. One that is not what the event store holds at
    its position (`stored`), or not a CloudEvent of the contract at all (a null value
    too, and one kafka-python could not parse: `consumers.kafka_io`), is refused (a
    rejected record, `consumers.projecting`); a genuine one that does not decode keeps
    its error (a dead letter).

    Only the personal `fields` (the projection's `personal_inputs`, none since read
    models store sealed values) are opened, and the customer fields in `search` (its
    `search_fields`) only to derive their search terms (`consumers.blind_index`): the
    event handed over stays sealed. The batch's data keys are fetched in one query
    (`Keyring.preload`). An event with nothing to open, in the current schema, is passed
    on as the bytes it arrived in: the writer decodes it anyway, so reading it here too
    would be wasted (now that is nearly every event).
    """
    decoding = fields | search
    read = _as_stored([_read(record, decoding) for record in records], stored)
    if fields or search:
        keyring.preload(
            r.event.data_subject
            for r in read
            if r.event is not None
            and (_fields_to_open(type(r.event), fields) or needs_terms(r.event, search))
        )
    return [_hand(r, keyring, fields, search) for r in read]


def decode(
    records: Sequence[Consumed],
    keyring: Keyring,
    stored: StoredEvents,
    fields: frozenset[str],
    search: frozenset[str] = frozenset(),
) -> list[Item]:
    """Records as items, events decoded and opened as a writer sees them."""
    return items_of(hand_over(records, keyring, stored, fields, search))


class _Read(NamedTuple):
    record: Consumed
    position: int
    data: bytes | None
    """The event's codec JSON, to pass on as it is."""
    event: DomainEvent | None = None
    """The decoded event, when fields must be opened (or a data key forgotten)."""
    error: str | None = None
    attributes: envelope.Delivered | None = None
    """What the record says it is, to compare with the event store."""
    refused: bool = False
    """Not a record of the event store: `error` says why (a rejected record)."""
    origin: Origin | None = None
    """(aggregate, version) of a genuine record that did not decode."""


def _read(record: Consumed, fields: frozenset[str]) -> _Read:
    try:
        attributes = envelope.delivered(record.value)
    except Exception as error:  # no relay wrote it: any such record is refused, by design
        unreadable = record.unreadable if isinstance(record, Record) else None
        return _Read(record, 0, None, None, unreadable or reason(error), refused=True)
    try:
        cls = codec.event_class(attributes.type)
        if attributes.schemaversion == cls.class_version and not _to_open(cls, fields):
            data = bytes(attributes.data)
            return _Read(record, attributes.position, data, None, None, attributes)
        event = envelope.event_of(attributes)
        return _Read(record, attributes.position, None, event, None, attributes)
    except Exception as error:  # a dead letter if the event store holds it, by design
        return _Read(record, attributes.position, None, None, reason(error), attributes)


def _as_stored(read: list[_Read], stored: StoredEvents) -> list[_Read]:
    """`read`, each record that is not what the event store holds at its position
    refused (`consumers.as_stored`: one query for the batch), and each genuine one that
    did not decode given its origin."""
    reasons = iter(mismatches([r.attributes for r in read if r.attributes is not None], stored))
    checked = []
    for r in read:
        if r.attributes is None:
            checked.append(r)
        elif (why := next(reasons)) is not None:
            checked.append(_Read(r.record, 0, None, None, why, refused=True))
        elif r.error is not None:
            checked.append(r._replace(origin=origin_of(r.attributes.data)))
        else:
            checked.append(r)
    return checked


def _hand(read: _Read, keyring: Keyring, fields: frozenset[str], search: frozenset[str]) -> Handed:
    r, event = read.record, read.event
    if event is None:
        return Handed(
            r.topic, r.partition, r.offset, read.position, r.value, read.data, read.error,
            None, read.refused, read.origin,
        )  # fmt: skip
    if isinstance(event, CustomerErased):
        keyring.forget(event.originator_id)
    try:
        opened = codec.unseal(event, keyring, _fields_to_open(type(event), fields))
        terms = search_terms(event, keyring, search)
    except Exception as error:  # a field that does not open is a dead letter, by design
        origin = (event.originator_id, event.originator_version)
        return Handed(
            r.topic, r.partition, r.offset, 0, r.value, None, reason(error), origin=origin
        )
    encoded = codec.encode(opened)
    return Handed(r.topic, r.partition, r.offset, read.position, r.value, encoded, None, terms)


@functools.cache
def _to_open(cls: type[DomainEvent], fields: frozenset[str]) -> bool:
    """Whether the reader must decode `cls`: to open fields, or to forget an erased key."""
    return bool(_fields_to_open(cls, fields)) or cls is CustomerErased


@functools.cache  # a few dozen (event class, projection) pairs
def _fields_to_open(cls: type[DomainEvent], fields: frozenset[str]) -> tuple[str, ...]:
    """The personal fields of `cls` among `fields` (those the projection reads)."""
    return tuple(name for name in cls.personal_fields if name in fields)
