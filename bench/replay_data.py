"""Test data for the projection benchmark: a seeded workload, stored and published.

Consumers apply only what the event store holds (`consumers.as_stored`), so the events
go where production's do: sealed into the real event store of the benchmark's database
(`insert_events`, the locked, chained insert, `CHUNK` events a call), then published as
the relay publishes what is stored (`consumers.relay.encode_notification`, at the
positions the store gave). Generating, sealing, storing and encoding run in a child
process while this one only sends the bytes (the project's idempotent
`kafka_io.Producer`, large batches), so the two halves use both cores. Keys stay in
memory in the child (a database round trip per new customer would dominate) and are
copied to PostgreSQL in one COPY.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from eventsourcing.persistence import Notification, StoredEvent
from psycopg_pool import ConnectionPool

from bench.workload import Workload
from consumers import kafka_io
from consumers.envelope import all_topics
from consumers.key_stores import PostgresKeyStore
from consumers.keyring import Keyring
from consumers.relay import encode_notification
from domain import codec
from domain.base import DomainEvent
from domain.customer import CustomerErased
from services.event_store import open_event_store

PARTITIONS = 3
CHUNK = 2000
Message = tuple[str, bytes, bytes]


class BenchKeyStore:
    """`consumers.keyring.KeyStore` in a dict (the publishing side only)."""

    def __init__(self) -> None:
        self.keys: dict[uuid.UUID, bytes | None] = {}

    def load(self, subject: uuid.UUID) -> bytes | None:
        return self.keys.get(subject)

    def load_many(self, subjects: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes | None]:
        return {subject: self.keys.get(subject) for subject in subjects}

    def create(self, subject: uuid.UUID, key: bytes) -> bytes | None:
        return self.keys.setdefault(subject, key)

    def destroy(self, subject: uuid.UUID) -> None:
        self.keys[subject] = None

    def destroyed(self, subject: uuid.UUID) -> bool:
        return subject in self.keys and self.keys[subject] is None

    def owe_erasure(self, subject: uuid.UUID) -> None:
        """Nothing owed: the workload's erasures destroy their keys at once."""

    def owed_erasures(self) -> list[uuid.UUID]:
        return []

    def drop_owed_erasure(self, subject: uuid.UUID, older_than: float) -> None:
        """Nothing owed (`owe_erasure`)."""

    def search_key(self) -> bytes:
        raise NotImplementedError("the publishing side computes no search terms")


def copy_keys(keys: dict[uuid.UUID, bytes | None], pool: ConnectionPool) -> None:
    PostgresKeyStore(pool)  # creates the table
    statement = "COPY crm_subject_keys (subject, key) FROM STDIN"
    with pool.connection() as conn, conn.cursor() as cursor, cursor.copy(statement) as copy:
        for subject, key in keys.items():
            copy.write_row((subject, key))


def relayed(recorder: Any, stored: Sequence[StoredEvent], prefix: str) -> list[Message]:
    """Store `stored` in the event store (one call of its insert) and return the
    (topic, key, CloudEvent) records the relay makes of them, at the stored positions."""
    positions = recorder.insert_events(stored)
    return [
        encode_notification(
            Notification(
                id=position, originator_id=s.originator_id,
                originator_version=s.originator_version, topic=s.topic, state=s.state,
            ),
            prefix,
        )
        for position, s in zip(positions, stored, strict=True)
    ]  # fmt: skip


def messages(
    events: int, prefix: str, keys: BenchKeyStore, database_url: str
) -> Iterator[list[Message]]:
    """Chunks of the workload as the relay publishes it: sealed, erasing keys like the
    service, and stored in the event store at `database_url` first (`relayed`)."""
    keyring = Keyring(keys)
    mapper = codec.CodecMapper(keyring)
    app = open_event_store(database_url, None)
    try:
        for chunk in _chunks(Workload(seed=42).events(events)):
            stored = []
            for event in chunk:
                stored.append(mapper.to_stored_event(event))
                if isinstance(event, CustomerErased):
                    keyring.erase(event.originator_id)
            yield relayed(app.recorder, stored, prefix)
    finally:
        app.close()


def _chunks(events: Iterator[DomainEvent]) -> Iterator[list[DomainEvent]]:
    chunk: list[DomainEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _generate(events: int, prefix: str, database_url: str, out: Any) -> None:
    """Child process: chunks of messages, then the key table (None-terminated)."""
    keys = BenchKeyStore()
    for chunk in messages(events, prefix, keys, database_url):
        out.put(chunk)
    out.put(keys.keys)
    out.put(None)


def publish(
    bootstrap: str, prefix: str, events: int, database_url: str
) -> dict[uuid.UUID, bytes | None]:
    """Store `events` in the event store at `database_url` and publish them to fresh
    topics under `prefix`; the data keys the consumers need."""
    kafka_io.ensure_topics(bootstrap, all_topics(prefix), partitions=PARTITIONS)
    context = multiprocessing.get_context("spawn")
    out: Any = context.Queue(maxsize=8)
    args = (events, prefix, database_url, out)
    child = context.Process(target=_generate, args=args, daemon=True)
    child.start()
    keys: dict[uuid.UUID, bytes | None] = {}
    with kafka_io.Producer(bootstrap, linger_ms=20, batch_size=1024 * 1024) as producer:
        while (item := out.get()) is not None:
            if isinstance(item, dict):
                keys = item
                continue
            for topic, key, value in item:
                producer.send(topic, key, value)
        producer.flush()
    child.join()
    return keys
