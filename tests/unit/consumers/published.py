"""Events as the relay publishes them, for the consumer unit tests (no broker): stored
first (in a `MemoryStoredEvents`, what consumers check records against), then published
from what is stored (`consumers.relay.encode_notification`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from uuid import UUID

from consumers.as_stored import WHOLE_BYTES, Held, digest
from consumers.kafka_records import Record
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
        self.events: dict[int, Notification] = {}
        self.queries = 0

    def store(self, event: DomainEvent, keyring: Keyring) -> Notification:
        """Seal and store `event` at the next position, as the event store does."""
        stored = codec.CodecMapper(keyring).to_stored_event(event)
        held = Notification(
            len(self.events) + 1, event.originator_id, event.originator_version, stored.topic,
            stored.state,
        )  # fmt: skip
        return self.hold(held)

    def hold(self, notification: Notification) -> Notification:
        self.events[notification.id] = notification
        return notification

    def held(self, positions: Sequence[int]) -> dict[int, Held]:
        """As `consumers.as_stored.PostgresStoredEvents` answers."""
        self.queries += 1
        found = (self.events[p] for p in positions if p in self.events)
        return {n.id: Held(n.topic, len(n.state), _whole_or_digest(n.state)) for n in found}

    def states(self, positions: Sequence[int]) -> dict[int, bytes]:
        self.queries += 1
        return {p: self.events[p].state for p in positions if p in self.events}


def _whole_or_digest(state: bytes) -> bytes:
    return state if len(state) <= WHOLE_BYTES else digest(state)


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
