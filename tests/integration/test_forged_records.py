"""Records forged on the event topics change no read model (real PostgreSQL and Kafka).

The broker has no ACLs: any internal service that can subscribe can also produce. Here
one does, between and around genuine events that the real relay publishes: a
`CustomerShared` opening a sales customer to marketing, a genuine event's record with
its data changed (published before the genuine one), an event with a huge aggregate
version (which would make every later genuine event of that customer "already
applied"), a registration at a position the store does not hold, a record whose `type`
holds a NUL (which PostgreSQL cannot store as text), one that is no CloudEvent, and a
genuine record copied ahead of the versions it follows (which made them "already
applied": the customer vanished). `crm consume`, `crm projections rebuild` and
`crm projections retry` (real processes) must reject each one, never as a dead letter
(readiness waits for those: a forger could keep the API out of service), and build
exactly the rows a clean build of the genuine records alone gives, later genuine events
of the same customers included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.persistence import Notification

from consumers import readmodel_queries
from consumers.envelope import HEADERS, all_topics, to_record, topic_name
from consumers.kafka_io import Producer, ensure_topics
from consumers.keyring import Keyring
from consumers.readmodel_store import DeadLetter
from consumers.relay import Relay, encode_notification
from consumers.relay_position import MemoryRelayPosition
from consumers.store_postgres import PostgresStore
from domain.base import Context, DomainEvent
from domain.customer import Customer, CustomerRegistered, CustomerShared, CustomerTagged
from projections import PROJECTIONS
from services.api.readiness import dead_letters_check
from services.event_store import CrmApplication, open_event_store
from tests.integration.projection_support import pg_keyring, tables_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # see test_runner
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
PAGE_PROJECTIONS = ("shared", "marketing")
"""What a department page reads (`readmodel_queries.department_customers`)."""
NASTY_TYPE = "Customer\x00Tag\x1b[2J"
"""A `type` with a NUL (no PostgreSQL text holds one) and a terminal's clear-screen."""
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

    def copied(self, position: int) -> tuple[str, bytes, bytes]:
        """The record the relay will publish of the genuine event at `position`."""
        (stored,) = self.app.recorder.select_notifications(start=position, limit=1)
        return encode_notification(stored, self.live)

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
    """The errors of the live generation's dead letters."""
    return _texts(store, name, "SELECT error AS text FROM {d}", "_dead_letters")


def rejected(store: PostgresStore, name: str) -> list[str]:
    """The reasons of the live generation's rejected records."""
    return _texts(store, name, "SELECT reason AS text FROM {d}", "_rejected")


def _texts(store: PostgresStore, name: str, query: str, table: str) -> list[str]:
    schema = f"{name}_v{store.live_generation(name)}"
    return sorted(row["text"] for row in store.fetch(query, {"d": f"{schema}.{table}"}, {}))


def built(store: PostgresStore) -> dict[str, Any]:
    """Every row of the projections' live generations, and what a department page shows."""
    pages = {
        department: [
            (row["customer_id"], row["role"], row["email_marketing"])
            for row in readmodel_queries.department_customers(store, department)
        ]
        for department in ("sales", "support", "marketing")
    }
    return {"pages": pages, **{name: tables_of(store, name) for name in PAGE_PROJECTIONS}}


def test_forged_records_are_rejected_and_genuine_ones_build_the_same_rows(
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
        bob = Customer.register(
            ctx("sales"), customer_id=uuid4(), name="Bob", owner_department="sales"
        )
        bob.tag(ctx("sales"), "new")
        bob_tagged = pipe.record(bob)  # stored, not relayed: a copy comes first
        pipe.forge(
            pipe.forged(_shared(ada.id, ada.version + 1, "marketing"), ada_registered),
            pipe.with_data_changed(tagged, b'"vip"', b'"pwned"'),
            pipe.forged(_tagged(ada.id, 2**40, "frozen"), carol_registered),
            pipe.forged(_registered(uuid4(), "marketing"), NOWHERE),
            _retyped(pipe.forged(_tagged(ada.id, 9, "x"), carol_registered), NASTY_TYPE),
            (topic_name("customer", live), b"", b"\x00\xff not a CloudEvent"),
            pipe.copied(bob_tagged),
        )
        pipe.relay()
        ada.tag(ctx("sales"), "after")
        ada.set_consent(ctx("sales"), "email_marketing", granted=True)
        pipe.record(ada)
        pipe.relay()

        for name in PAGE_PROJECTIONS:
            done = crm(*at, live, "consume", name, "--until-caught-up")
            assert done.returncode == 0, done.stderr
        consumed = built(store)
        refused = {name: rejected(store, name) for name in PAGE_PROJECTIONS}
        assert [dead_letters(store, name) for name in PAGE_PROJECTIONS] == [[], []]
        assert dead_letters_check(store) is None  # /readyz: ready
        assert [store.status(name).rejected for name in PAGE_PROJECTIONS] == [7, 7]
        for name in PAGE_PROJECTIONS:
            done = crm(*at, live, "projections", "retry", name)
            assert done.stdout.strip() == f"{name}: 0 dead letters retried, 0 still failing"
            assert done.returncode == 0
        retried = built(store)
        listed = crm(*at, live, "projections", "rejected", "shared", "--json")
        shown = crm(*at, live, "projections", "rejected", "shared")

        for name in PAGE_PROJECTIONS:  # the genuine records alone
            assert crm(*at, clean, "projections", "rebuild", name).returncode == 0
            assert dead_letters(store, name) == []
        clean_build = built(store)
        for name in PAGE_PROJECTIONS:  # from offset 0 of the live topics again
            assert crm(*at, live, "projections", "rebuild", name).returncode == 0
        rebuilt = built(store)
        rebuilt_refused = {name: rejected(store, name) for name in PAGE_PROJECTIONS}
        assert dead_letters_check(store) is None

    not_as_stored = sorted(
        f"not as stored at position {position}: {reason}"
        for position, reason in (
            (ada_registered, "it is a CustomerShared in schema version 1; the event store"
             " holds a CustomerRegistered in schema version 1"),
            (tagged, "its data differs from the stored CustomerTagged"),
            (carol_registered, "it is a CustomerTagged in schema version 1; the event store"
             " holds a CustomerRegistered in schema version 1"),
            (NOWHERE, "the event store holds no event there"),
            (carol_registered, "it is a Customer\\x00Tag\x1b[2J in schema version 1; the event"
             " store holds a CustomerRegistered in schema version 1"),
        )
    )  # fmt: skip
    assert listed.returncode == shown.returncode == 0, listed.stderr + shown.stderr
    assert sorted(row["reason"] for row in json.loads(listed.stdout)) == refused["shared"]
    assert len(shown.stdout.splitlines()) == 7
    assert "Customer\\x00Tag\\x1b[2J" in shown.stdout  # no terminal control from a forger
    assert "\x1b" not in shown.stdout
    for reasons in (refused, rebuilt_refused):
        assert set(reasons) == set(PAGE_PROJECTIONS)
        for name in PAGE_PROJECTIONS:
            no_cloudevent, *others, out_of_order = reasons[name]
            assert others == not_as_stored
            assert no_cloudevent.startswith("InvalidEnvelope: not a CloudEvent")
            assert out_of_order.startswith(
                f"out of order: version 2 of aggregate {bob.id} before version 1"
            )
    assert consumed == retried == rebuilt == clean_build
    customers = {row["customer_id"]: row for row in clean_build["shared"]["customers"]}
    assert (customers[ada.id]["tags"], customers[ada.id]["owner_department"]) == (
        "after,vip", "sales",
    )  # fmt: skip
    assert customers[bob.id]["tags"] == "new"
    assert clean_build["pages"]["marketing"] == [(carol.id, "owner", False)]
    assert sorted(clean_build["pages"]["sales"]) == sorted(
        [(ada.id, "owner", True), (bob.id, "owner", False)]
    )


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


def _retyped(record: tuple[str, bytes, bytes], kind: str) -> tuple[str, bytes, bytes]:
    """`record` claiming to be of type `kind`."""
    topic, key, value = record
    envelope = msgspec.json.decode(value)
    return topic, key, msgspec.json.encode({**envelope, "type": kind})


def test_retry_turns_a_forged_records_dead_letter_into_a_rejected_record(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """An older version kept forged records as dead letters, which kept `/readyz` at 503
    for good; after an upgrade, `crm projections retry` makes them rejected records."""
    with (
        pg_keyring(pg_url) as keyring,
        pipeline(pg_url, keyring, kafka_bootstrap, topic_prefix, f"{topic_prefix}c.") as pipe,
        closing(PostgresStore(pg_url)) as store,
    ):
        projection = PROJECTIONS["shared"]
        generation = store.install(projection)
        topic, _, value = pipe.forged(_registered(uuid4(), "marketing"), NOWHERE)
        letter = DeadLetter("", topic, 1, 5, 0, None, None, "", "InvalidEnvelope: old", value)
        with store.session(projection, generation) as session:
            session.add_dead_letters([letter])
        assert dead_letters_check(store) is not None  # not ready
        done = crm(pg_url, kafka_bootstrap, topic_prefix, "projections", "retry", "shared")
        status = store.status("shared")
        assert dead_letters_check(store) is None
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "shared: 1 dead letters retried, 0 still failing, 1 rejected (`status`)"
    )
    assert (status.dead_letters, status.rejected) == (0, 1)
