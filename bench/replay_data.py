"""Test data for the projection benchmark: a seeded workload, sealed and published.

Generating, sealing and encoding events runs in a child process while this one only
sends the bytes (the project's idempotent `kafka_io.Producer`, large batches): on two
cores that about doubles the old single-threaded 1.5-2k msgs/s, so 1 M events is a
few minutes of set-up, not ten. Keys stay in memory in the child (a database round
trip per new customer would dominate) and are copied to PostgreSQL in one COPY.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from psycopg_pool import ConnectionPool

from bench.workload import Workload
from consumers import kafka_io
from consumers.envelope import all_topics, to_cloudevent, topic_name
from consumers.key_stores import PostgresKeyStore
from consumers.keyring import Keyring
from domain import codec
from domain.customer import CustomerErased

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

    def search_key(self) -> bytes:
        raise NotImplementedError("the publishing side computes no search terms")


def copy_keys(keys: dict[uuid.UUID, bytes | None], pool: ConnectionPool) -> None:
    PostgresKeyStore(pool)  # creates the table
    statement = "COPY crm_subject_keys (subject, key) FROM STDIN"
    with pool.connection() as conn, conn.cursor() as cursor, cursor.copy(statement) as copy:
        for subject, key in keys.items():
            copy.write_row((subject, key))


def messages(events: int, prefix: str, keys: BenchKeyStore) -> Iterator[Message]:
    """(topic, key, CloudEvent) of the workload, sealed, erasing keys like the service."""
    keyring = Keyring(keys)
    for position, event in enumerate(Workload(seed=42).events(events), start=1):
        sealed = to_cloudevent(codec.seal(event, keyring), position)
        yield topic_name(event.aggregate_type, prefix), str(event.originator_id).encode(), sealed
        if isinstance(event, CustomerErased):
            keyring.erase(event.originator_id)


def _generate(events: int, prefix: str, out: Any) -> None:
    """Child process: chunks of messages, then the key table (None-terminated)."""
    keys = BenchKeyStore()
    chunk: list[Message] = []
    for message in messages(events, prefix, keys):
        chunk.append(message)
        if len(chunk) == CHUNK:
            out.put(chunk)
            chunk = []
    out.put(chunk)
    out.put(keys.keys)
    out.put(None)


def publish(bootstrap: str, prefix: str, events: int) -> dict[uuid.UUID, bytes | None]:
    """Publish `events` to fresh topics under `prefix`; the data keys the consumers need."""
    kafka_io.ensure_topics(bootstrap, all_topics(prefix), partitions=PARTITIONS)
    context = multiprocessing.get_context("spawn")
    out: Any = context.Queue(maxsize=8)
    child = context.Process(target=_generate, args=(events, prefix, out), daemon=True)
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
