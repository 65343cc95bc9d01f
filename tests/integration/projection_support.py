"""Helpers for the projection runner tests: store and publish events, read tables, compare."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification
from psycopg.sql import SQL
from psycopg_pool import ConnectionPool

from consumers.envelope import HEADERS, all_topics
from consumers.kafka_io import Producer, ensure_topics
from consumers.key_stores import PostgresKeyStore
from consumers.keyring import Keyring
from consumers.pg_pool import open_pool
from consumers.readmodel_store import ReadModelStore
from consumers.rebuild import Source
from consumers.relay import encode_notification
from consumers.store_postgres import PostgresStore
from consumers.store_sqlite import SqliteStore
from domain import codec
from domain.base import DomainEvent
from domain.customer import CustomerErased
from projections import PROJECTIONS
from services.bootstrap import as_stored
from services.event_store import open_event_store

_HELD = (
    "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
    " WHERE (originator_id, originator_version) IN"
    " (SELECT * FROM unnest(%s::uuid[], %s::bigint[])) ORDER BY notification_id"
)


class EventLog:
    """The real event store of a test's database, and the relay's part: events are
    stored there (sealed with `keyring`) and published as the relay publishes what is
    stored, so consumers find them there when they check (`consumers.as_stored`).
    `stored` is that check's view of the store, for runners built in the test."""

    def __init__(self, database_url: str, keyring: Keyring) -> None:
        self.app = open_event_store(database_url, None)
        self._pool = open_pool(database_url, max_size=4)
        self.stored = as_stored(self.app, self._pool)
        self.keyring, self._mapper = keyring, codec.CodecMapper(keyring)
        self._held = SQL(_HELD).format(self.app.recorder.events_table)  # type: ignore[attr-defined]

    def store(self, events: Sequence[DomainEvent]) -> list[Notification]:
        """`events` as stored, in the store's order: those it does not hold yet are
        stored first, in one insert (and, like the erase command, an erased customer's
        key is destroyed before any consumer can see the `CustomerErased` event)."""
        held = self._notifications(events)
        new = [e for e in events if (e.originator_id, e.originator_version) not in held]
        if new:
            self.app.recorder.insert_events([self._mapper.to_stored_event(e) for e in new])
            for event in new:
                if isinstance(event, CustomerErased):
                    self.keyring.erase(event.originator_id)
            held = self._notifications(events)
        return sorted(held.values(), key=lambda n: n.id)

    def publish(self, bootstrap: str, prefix: str, events: Sequence[DomainEvent]) -> None:
        """Store `events` (those not stored yet) and publish them all as the relay
        does: those stored already again, as the relay re-sends after a failure."""
        ensure_topics(bootstrap, all_topics(prefix), partitions=3)
        notifications = self.store(events)
        with Producer(bootstrap) as producer:
            for notification in notifications:
                producer.send(*encode_notification(notification, prefix), HEADERS)
            producer.flush()

    def source(self, bootstrap: str, prefix: str) -> Source:
        """Where a rebuild reads: the topics under `prefix`, checked against this store."""
        return Source(bootstrap, all_topics(prefix), self.keyring, self.stored, prefix)

    def _notifications(self, events: Sequence[DomainEvent]) -> dict[tuple[UUID, int], Notification]:
        ids = [e.originator_id for e in events]
        versions = [e.originator_version for e in events]
        with self._pool.connection() as conn:
            rows = conn.execute(self._held, (ids, versions)).fetchall()
        return {
            (originator, version): Notification(
                id=position, originator_id=originator, originator_version=version,
                topic=topic, state=bytes(state),
            )
            for position, originator, version, topic, state in rows
        }  # fmt: skip

    def close(self) -> None:
        self._pool.close()
        self.app.close()


@contextmanager
def event_log(database_url: str, keyring: Keyring) -> Iterator[EventLog]:
    log = EventLog(database_url, keyring)
    try:
        yield log
    finally:
        log.close()


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
