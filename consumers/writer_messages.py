"""What crosses the pipes between a projection runner and its writer, and how.

Runner -> writer: a `Batch` of `Handed` records (events as `domain.codec` JSON, already
opened; the pipe never leaves the machine), which the writer turns into the items it
applies (`items_of`, decoding the events on its side of the pipe). Writer -> runner: a
`Written` per batch, in order, and a `Retrying` notice per failed attempt. Frames are
msgpack, encoded by the one `encoder` (each side keeps the decoder of what it receives).
The inline writer (`consumers.projection_writer.InlineWriter`) takes the same `Handed`
records, so both writers apply alike. I/O: none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from consumers.projecting import Item, Origin, origin_of
from domain import codec
from projections.base import SearchTerms


class Handed(NamedTuple):
    """One record as a runner hands it to a writer: its event as current-schema codec
    JSON (opened as far as the projection needs), or None and the error that makes it
    a dead letter (or, `refused`, a rejected record), and the search terms derived from
    it; `origin` as in `consumers.projecting.Item`. The writer decodes the events: on
    its side of the pipe."""

    topic: str
    partition: int
    offset: int
    position: int
    value: bytes
    event: bytes | None
    error: str | None = None
    terms: SearchTerms | None = None
    refused: bool = False
    origin: Origin | None = None


def items_of(handed: Sequence[Handed]) -> list[Item]:
    """The writer's items: events decoded; one that does not decode is a dead letter."""
    return [_item(h) for h in handed]


def _item(h: Handed) -> Item:
    if h.event is None:
        return Item(
            h.topic, h.partition, h.offset, h.position, h.value, None, h.error, None, h.refused,
            h.origin,
        )  # fmt: skip
    try:
        event = codec.decode_tagged(h.event)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        reason = f"InvalidEvent: {error}"
        return Item(
            h.topic, h.partition, h.offset, 0, h.value, None, reason, origin=origin_of(h.event)
        )
    return Item(h.topic, h.partition, h.offset, h.position, h.value, event, None, h.terms)


class Written(msgspec.Struct, array_like=True, frozen=True, tag="written"):
    """What became of one batch: counts and commit time, or `abandoned` (nothing written)."""

    events: int
    lag: int | None = None
    applied: int = 0
    skipped: int = 0
    dead: int = 0
    rejected: int = 0
    seconds: float = 0.0
    abandoned: bool = False
    error: str | None = None


class Retrying(msgspec.Struct, array_like=True, frozen=True, tag="retrying"):
    """An attempt to commit failed on a transient error; the next one follows `delay` s.
    `unavailable`: the database could not be reached at all (rather than, say, a
    deadlock), which the runner reports as an outage, once."""

    error: str
    delay: float
    unavailable: bool = False
    at: float = 0.0
    """When the failed attempt began (`time.time()`). The runner may read the notice
    later, and an attempt begun before it saw the database back (one that waited
    seconds for a connection through the outage) says nothing about the database now."""


class Batch(msgspec.Struct, array_like=True):
    lag: int | None
    handed: list[Handed]


encoder = msgspec.msgpack.Encoder()
