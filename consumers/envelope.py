"""The wire contract on Kafka: one CloudEvents 1.0 event per record, structured JSON mode.

Any CloudEvents SDK reads these records (header `content-type:
application/cloudevents+json`). `data` is the event exactly as stored: sealed (personal
fields stay encrypted with the data subject's key) and encoded by `domain.codec` — this
module never encrypts, decrypts or JSON-encodes an event itself; it only wraps bytes.

I/O: none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

import msgspec

from domain import codec
from domain.base import DomainEvent

SPEC_VERSION = "1.0"
SOURCE = "crm-collab"
CONTENT_TYPE = "application/cloudevents+json"
HEADERS: tuple[tuple[str, bytes], ...] = (("content-type", CONTENT_TYPE.encode()),)
AGGREGATE_TYPES: tuple[str, ...] = ("customer", "conversation", "task")
TOPICS: tuple[str, ...] = tuple(f"crm.{kind}.v1" for kind in AGGREGATE_TYPES)


class InvalidEnvelope(ValueError):  # noqa: N818 - public name others import
    """A Kafka record is not a CloudEvent of this contract."""


class CloudEvent(msgspec.Struct, omit_defaults=True):
    """The attributes of one published event (CloudEvents 1.0 + our extensions).

    Optional attributes are omitted when null, as the spec asks. Fields are
    positional: the relay builds one per event, and keywords cost 6x more.
    """

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: str
    data: msgspec.Raw
    aggregatetype: str
    aggregateversion: int
    position: int
    schemaversion: int
    actor: str
    actordepartment: str
    correlationid: str
    causationid: str | None = None


class Delivered(msgspec.Struct):
    """What a consumer needs of a record: the event's type and schema version, its global
    position, and its data still encoded. Decoding only these skips the other
    attributes (a replay reads a million envelopes; the full one costs twice as much)."""

    specversion: str
    type: str
    position: int
    schemaversion: int
    data: msgspec.Raw


Attributes = TypeVar("Attributes", CloudEvent, Delivered)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CloudEvent)
_delivered = msgspec.json.Decoder(Delivered)


def topic_name(aggregate_type: str, prefix: str = "") -> str:
    """Topic of an aggregate type: `<prefix>crm.<aggregate_type>.v1`."""
    return f"{prefix}crm.{aggregate_type}.v1"


def all_topics(prefix: str = "") -> list[str]:
    return [topic_name(kind, prefix) for kind in AGGREGATE_TYPES]


def event_id(event: DomainEvent) -> str:
    """Unique and stable across re-publication: `<aggregate id>/<version>` (dedup key)."""
    return f"{event.originator_id}/{event.originator_version}"


def to_cloudevent(event: DomainEvent, position: int, data: bytes | None = None) -> bytes:
    """The record value for a sealed `event` at global `position` (see `to_record`)."""
    return to_record(event, position, data)[1]


def to_record(event: DomainEvent, position: int, data: bytes | None = None) -> tuple[bytes, bytes]:
    """(key, value) of the Kafka record for a sealed `event` at global `position`.

    `data` may be the stored bytes of the event when they are already in the current
    schema version (saves a re-encode); otherwise the codec encodes the event.
    """
    subject = str(event.originator_id)
    occurred = event.occurred_at
    envelope = CloudEvent(
        SPEC_VERSION,
        f"{subject}/{event.originator_version}",  # = event_id(event)
        SOURCE,
        event.wire_name(),
        subject,
        occurred if occurred.tzinfo is not None else occurred.replace(tzinfo=UTC),
        "application/json",
        msgspec.Raw(codec.encode(event) if data is None else data),
        event.aggregate_type,
        event.originator_version,
        position,
        event.class_version,
        event.actor,
        event.actor_department,
        event.correlation_id,
        event.causation_id,
    )
    return subject.encode(), _encoder.encode(envelope)


def read_cloudevent(value: bytes) -> CloudEvent:
    """The envelope's attributes, `data` left as raw JSON."""
    return _read(_decoder, value)


def delivered(value: bytes) -> Delivered:
    """The attributes a consumer needs (see `Delivered`); `InvalidEnvelope` if it is none."""
    return _read(_delivered, value)


def _read(decoder: msgspec.json.Decoder[Attributes], value: bytes) -> Attributes:
    try:
        attributes = decoder.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # a string not UTF-8: the latter
        detail = "no value (empty, or null: a tombstone)" if not value else str(error)
        raise InvalidEnvelope(f"not a CloudEvent of this contract: {detail}") from None
    if attributes.specversion != SPEC_VERSION:
        raise InvalidEnvelope(f"unsupported specversion {attributes.specversion!r}")
    return attributes


def event_of(attributes: Delivered) -> DomainEvent:
    """The delivered (sealed) event, upcast to the current schema."""
    cls = codec.event_class(attributes.type)
    try:
        return codec.decode(cls, memoryview(attributes.data), attributes.schemaversion)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        where = f"{attributes.type} at position {attributes.position}"
        raise InvalidEnvelope(f"{where}: bad data: {error}") from None


def from_cloudevent(value: bytes) -> tuple[DomainEvent, int]:
    """The sealed event (upcast to the current schema) and its global position."""
    attributes = delivered(value)
    return event_of(attributes), attributes.position
