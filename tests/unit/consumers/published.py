"""Events as the relay publishes them, for the consumer unit tests (no broker): stored
first (in a `MemoryStoredEvents`, what consumers check records against), then published
from what is stored (`consumers.relay.encode_notification`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from uuid import UUID

from consumers.as_stored import Stored, digest
from consumers.kafka_io import Record
from consumers.keyring import Keyring, MemoryKeyStore
from consumers.relay import encode_notification
from domain import codec
from domain.base import DomainEvent
from domain.customer import CustomerErased


class Notification(NamedTuple):
    """A stored event as the relay reads it."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


class MemoryStoredEvents:
    """`consumers.as_stored.StoredEvents` in a dict (tests/unit only): what is stored at
    each position, and how often it was asked."""

    def __init__(self) -> None:
        self.held: dict[int, Notification] = {}
        self.queries = 0

    def store(self, event: DomainEvent, keyring: Keyring) -> Notification:
        """Seal and store `event` at the next position, as the event store does."""
        stored = codec.CodecMapper(keyring).to_stored_event(event)
        held = Notification(
            len(self.held) + 1, event.originator_id, event.originator_version, stored.topic,
            stored.state,
        )  # fmt: skip
        return self.hold(held)

    def hold(self, notification: Notification) -> Notification:
        self.held[notification.id] = notification
        return notification

    def digests(self, positions: Sequence[int]) -> dict[int, Stored]:
        self.queries += 1
        held = (self.held[p] for p in positions if p in self.held)
        return {n.id: Stored(n.topic, digest(n.state)) for n in held}

    def states(self, positions: Sequence[int]) -> dict[int, bytes]:
        self.queries += 1
        return {p: self.held[p].state for p in positions if p in self.held}


def record(notification: Notification, offset: int) -> Record:
    """The record the relay publishes of a stored event (topic "t", partition 0)."""
    _, key, value = encode_notification(notification, "")
    return Record("t", 0, offset, key, value)


def published(events: Sequence[DomainEvent]) -> tuple[list[Record], Keyring, MemoryStoredEvents]:
    """The events stored (positions from 1) and published at offsets from 0, their
    keyring, in which the erased customers' keys are destroyed, as the erase command
    does, and the store."""
    keyring, stored = Keyring(MemoryKeyStore()), MemoryStoredEvents()
    records = [record(stored.store(event, keyring), offset) for offset, event in enumerate(events)]
    for event in events:
        if isinstance(event, CustomerErased):
            keyring.erase(event.originator_id)
    return records, keyring, stored
