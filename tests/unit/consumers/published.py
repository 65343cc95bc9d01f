"""Events as the relay publishes them, for the consumer unit tests (no broker)."""

from __future__ import annotations

from collections.abc import Sequence

from consumers.envelope import to_cloudevent
from consumers.kafka_io import Record
from consumers.keyring import Keyring, MemoryKeyStore
from domain import codec
from domain.base import DomainEvent
from domain.customer import CustomerErased


def published(events: Sequence[DomainEvent]) -> tuple[list[Record], Keyring]:
    """Sealed CloudEvents at offsets (and positions) from 0 (1), and their keyring,
    in which the erased customers' keys are destroyed, as the erase command does."""
    keyring = Keyring(MemoryKeyStore())
    records = [
        Record("t", 0, offset, None, to_cloudevent(codec.seal(event, keyring), offset + 1))
        for offset, event in enumerate(events)
    ]
    for event in events:
        if isinstance(event, CustomerErased):
            keyring.erase(event.originator_id)
    return records, keyring
