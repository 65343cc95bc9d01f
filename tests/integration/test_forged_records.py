"""Records forged on the event topics change no read model (real PostgreSQL and Kafka).

The broker has no ACLs: any internal service that can subscribe can also produce. Here
one does, between and around genuine events that the real relay publishes: a
`CustomerShared` opening a sales customer to marketing, a genuine event's record with
its data changed (published before the genuine one), an event with a huge aggregate
version (which would make every later genuine event of that customer "already
applied"), and a registration at a position the store does not hold. `crm consume`,
`crm projections rebuild` and `crm projections retry` (real processes) must make each
forgery a dead letter and build exactly the rows a clean build of the genuine records
alone gives, later genuine events of the same customer included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Notification

from consumers import readmodel_queries
from consumers.envelope import HEADERS, all_topics, to_record, topic_name
from consumers.kafka_io import Producer, ensure_topics
from consumers.keyring import Keyring
from consumers.relay import Relay, encode_notification
from consumers.relay_position import MemoryRelayPosition
from consumers.store_postgres import PostgresStore
from domain.base import Context, DomainEvent
from domain.customer import Customer, CustomerRegistered, CustomerShared, CustomerTagged
from services.event_store import CrmApplication, open_event_store
from tests.integration.projection_support import pg_keyring, tables_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # see test_runner
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
PROJECTIONS = ("shared", "marketing")
"""What a department page reads (`readmodel_queries.department_customers`)."""
NOWHERE = 10**9
"""A position far past the store's end."""


def ctx(department: str, actor: str = "ann") -> Context:
    return Context(
        actor=actor, actor_department=department, occurred_at=datetime.now(UTC),
        correlation_id=str(uuid4()),
    )  # fmt: skip


class Pipeline:
    """The test database's event store and the real relay, publishing every genuine
    event both to the live topics (where forgeries land too) and to clean ones."""

    def __init__(self, app: CrmApplication, bootstrap: str, live: str, clean: str) -> None:
        self.app, self.bootstrap, self.live = app, bootstrap, live
        self.relays = [
            Relay(app.recorder, lambda: Producer(bootstrap), MemoryRelayPosition(), topic_prefix=p)
            for p in (live, clean)
        ]

    def record(self, *customers: Customer) -> int:
        """Store the customers' new events; the position of the last."""
        return int(self.app.record(*customers)[-1].notification.id)

    def relay(self) -> None:
        for relay in self.relays:
            relay.drain()

    def forge(self, *records: tuple[str, bytes, bytes]) -> None:
        with Producer(self.bootstrap, client_id="intruder") as producer:
            for record in records:
                producer.send(*record, HEADERS)
            producer.flush()

    def forged(self, event: DomainEvent, position: int) -> tuple[str, bytes, bytes]:
        """A record of `event` (not stored) claiming `position`, as the relay would make
        one: the forger has no data keys, so a personal field is plaintext."""
        key, value = to_record(event, position)
        return topic_name(event.aggregate_type, self.live), key, value

    def with_data_changed(self, position: int, old: bytes, new: bytes) -> tuple[str, bytes, bytes]:
        """The record of the genuine event at `position`, its data's `old` made `new`."""
        (stored,) = self.app.recorder.select_notifications(start=position, limit=1)
        assert old in stored.state
        changed = Notification(
            id=stored.id, originator_id=stored.originator_id,
            originator_version=stored.originator_version, topic=stored.topic,
            state=stored.state.replace(old, new),
        )  # fmt: skip
        return encode_notification(changed, self.live)

    def close(self) -> None:
        for relay in self.relays:
            relay.close()


@contextmanager
def pipeline(
    database_url: str, keyring: Keyring, bootstrap: str, live: str, clean: str
) -> Iterator[Pipeline]:
    for prefix in (live, clean):
        ensure_topics(bootstrap, all_topics(prefix), partitions=3)
    app = open_event_store(database_url, None, keyring)
    opened = Pipeline(app, bootstrap, live, clean)
    try:
        yield opened
    finally:
        opened.close()
        app.close()


def crm(
    database_url: str, bootstrap: str, prefix: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_DATABASE_URL": database_url, "CRM_KAFKA_BOOTSTRAP": bootstrap,
           "CRM_TOPIC_PREFIX": prefix, "CRM_LOG_LEVEL": "warning"}  # fmt: skip
    command = [sys.executable, "-m", "services.cli", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def dead_letters(store: PostgresStore, name: str) -> list[str]:
    """The errors of the live generation's dead letters, in the order consumed."""
    schema = f"{name}_v{store.live_generation(name)}"
    rows = store.fetch("SELECT error FROM {d} ORDER BY id", {"d": f"{schema}._dead_letters"}, {})
    return sorted(row["error"] for row in rows)


def built(store: PostgresStore) -> dict[str, Any]:
    """Every row of the projections' live generations, and what a department page shows."""
    pages = {
        department: [
            (row["customer_id"], row["role"], row["email_marketing"])
            for row in readmodel_queries.department_customers(store, department)
        ]
        for department in ("sales", "support", "marketing")
    }
    return {"pages": pages, **{name: tables_of(store, name) for name in PROJECTIONS}}


def test_forged_records_are_dead_letters_and_genuine_ones_build_the_same_rows(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    live, clean = topic_prefix, f"{topic_prefix}clean."
    at = (pg_url, kafka_bootstrap)
    with (
        pg_keyring(pg_url) as keyring,
        pipeline(pg_url, keyring, kafka_bootstrap, live, clean) as pipe,
        closing(PostgresStore(pg_url)) as store,
    ):
        ada = Customer.register(
            ctx("sales"), customer_id=uuid4(), name="Ada", email="ada@example.com",
            owner_department="sales",
        )  # fmt: skip
        carol = Customer.register(
            ctx("marketing"), customer_id=uuid4(), name="Carol", owner_department="marketing"
        )
        ada_registered = pipe.record(ada)
        carol_registered = pipe.record(carol)
        pipe.relay()
        ada.tag(ctx("sales"), "vip")
        tagged = pipe.record(ada)  # stored, not relayed yet: its forged twin comes first
        pipe.forge(
            pipe.forged(_shared(ada.id, ada.version + 1, "marketing"), ada_registered),
            pipe.with_data_changed(tagged, b'"vip"', b'"pwned"'),
            pipe.forged(_tagged(ada.id, 2**40, "frozen"), carol_registered),
            pipe.forged(_registered(uuid4(), "marketing"), NOWHERE),
        )
        pipe.relay()
        ada.tag(ctx("sales"), "after")
        ada.set_consent(ctx("sales"), "email_marketing", granted=True)
        pipe.record(ada)
        pipe.relay()

        for name in PROJECTIONS:
            done = crm(*at, live, "consume", name, "--until-caught-up")
            assert done.returncode == 0, done.stderr
        consumed = built(store)
        letters = {name: dead_letters(store, name) for name in PROJECTIONS}
        for name in PROJECTIONS:
            done = crm(*at, live, "projections", "retry", name)
            assert done.stdout.strip() == f"{name}: 4 dead letters retried, 4 still failing"
            assert done.returncode == 1
        retried = built(store)

        for name in PROJECTIONS:  # the genuine records alone
            assert crm(*at, clean, "projections", "rebuild", name).returncode == 0
            assert dead_letters(store, name) == []
        clean_build = built(store)
        for name in PROJECTIONS:  # from offset 0 of the live topics again
            assert crm(*at, live, "projections", "rebuild", name).returncode == 0
        rebuilt = built(store)
        rebuilt_letters = {name: dead_letters(store, name) for name in PROJECTIONS}

    not_as_stored = sorted(
        f"not as stored at position {position}: {reason}"
        for position, reason in (
            (ada_registered, "it is a CustomerShared in schema version 1; the event store"
             " holds a CustomerRegistered in schema version 1"),
            (tagged, "its data differs from the stored CustomerTagged"),
            (carol_registered, "it is a CustomerTagged in schema version 1; the event store"
             " holds a CustomerRegistered in schema version 1"),
            (NOWHERE, "the event store holds no event there"),
        )
    )  # fmt: skip
    assert letters == rebuilt_letters == dict.fromkeys(PROJECTIONS, not_as_stored)
    assert consumed == retried == rebuilt == clean_build
    (ada_row,) = [row for row in clean_build["shared"]["customers"] if row["customer_id"] == ada.id]
    assert (ada_row["tags"], ada_row["owner_department"]) == ("after,vip", "sales")
    assert clean_build["pages"]["marketing"] == [(carol.id, "owner", False)]
    assert clean_build["pages"]["sales"] == [(ada.id, "owner", True)]


def _metadata(aggregate: UUID, version: int) -> dict[str, Any]:
    return {
        "originator_id": aggregate, "originator_version": version,
        "occurred_at": datetime.now(UTC), "actor": "mallory", "actor_department": "marketing",
        "correlation_id": "forged",
    }  # fmt: skip


def _shared(customer: UUID, version: int, department: str) -> CustomerShared:
    return CustomerShared(**_metadata(customer, version), department=department)


def _tagged(customer: UUID, version: int, tag: str) -> CustomerTagged:
    return CustomerTagged(**_metadata(customer, version), tag=tag)


def _registered(customer: UUID, department: str) -> CustomerRegistered:
    return CustomerRegistered(
        **_metadata(customer, 1), name="Mallory", email="m@example.com", owner_department=department
    )
