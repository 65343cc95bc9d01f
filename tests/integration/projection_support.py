"""Helpers for the projection runner tests: publish events, read tables, compare."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from consumers.envelope import all_topics, to_cloudevent, topic_name
from consumers.kafka_io import Producer, ensure_topics
from consumers.key_stores import PostgresKeyStore
from consumers.keyring import Keyring
from consumers.readmodel_store import ReadModelStore
from consumers.store_postgres import PostgresStore
from consumers.store_sqlite import SqliteStore
from domain import codec
from domain.base import DomainEvent
from domain.customer import CustomerErased
from projections import PROJECTIONS


def publish(
    bootstrap: str, prefix: str, events: Sequence[DomainEvent], keyring: Keyring, first: int = 1
) -> None:
    """Seal and publish `events` as CloudEvents (positions from `first`), like the relay.

    Like the erase command, it destroys an erased customer's key before any consumer
    can see the `CustomerErased` event.
    """
    ensure_topics(bootstrap, all_topics(prefix), partitions=3)
    with Producer(bootstrap) as producer:
        for position, event in enumerate(events, start=first):
            sealed = codec.seal(event, keyring)
            producer.send(
                topic_name(event.aggregate_type, prefix),
                str(event.originator_id).encode(),
                to_cloudevent(sealed, position),
            )
        producer.flush()
    for event in events:
        if isinstance(event, CustomerErased):
            keyring.erase(event.originator_id)


@contextmanager
def pg_keyring(pg_url: str) -> Iterator[Keyring]:
    """Keys in the test database, so a `crm consume` subprocess can read them too."""
    with ConnectionPool(pg_url, min_size=1, max_size=2, open=True) as pool:
        yield Keyring(PostgresKeyStore(pool))


def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> ReadModelStore:
    """The read-model store a `params=["sqlite", "postgres"]` fixture asks for."""
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "readmodels.db")
    return PostgresStore(request.getfixturevalue("pg_url"))


def normal(value: Any) -> Any:
    return round(float(value), 6) if isinstance(value, Decimal | float) else value


def tables_of(store: ReadModelStore, name: str, generation: int | None = None) -> dict[str, Any]:
    """Every table of a projection generation (default: live), normalised for comparison."""
    generation = generation or store.live_generation(name)
    assert generation is not None
    return {
        spec.name: [
            {k: normal(v) for k, v in row.items()} for row in store.dump(name, generation, spec)
        ]
        for spec in PROJECTIONS[name].tables
    }
