"""The relay against a real PostgreSQL and a real Kafka broker.

Completeness and per-aggregate order under concurrent writes, crashes (SIGKILL) and a
broker outage; the wire contract as a foreign consumer sees it; unsafe topics refused.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat
from eventsourcing.persistence import StoredEvent
from psycopg_pool import ConnectionPool

from consumers.envelope import all_topics, from_cloudevent
from consumers.kafka_io import Producer, ensure_topics, read_all
from consumers.relay import Relay, RelayPoisoned, UnsafeTopics, verify_topics
from consumers.relay_position import PostgresRelayPosition, relay_status
from services.event_store import CrmApplication, open_event_store
from tests.integration.private_services import PrivateServices
from tests.integration.relay_support import (
    assert_complete_in_order,
    published_versions,
    running_relay,
    wait_until,
    write_concurrently,
    write_customers,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CRM = [sys.executable, "-m", "services.cli"]


@pytest.fixture
def app(pg_url: str) -> Iterator[CrmApplication]:
    application = open_event_store(pg_url, None)
    yield application
    application.close()


def test_concurrent_writes_arrive_complete_and_in_order(
    app: CrmApplication, pg_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    with running_relay(app, pg_url, kafka_bootstrap, topic_prefix) as positions:
        expected = write_concurrently(app, threads=4, customers=50, versions=15)
        head = app.head_position()
        wait_until(lambda: positions.load() >= head, 60, "relay to catch up")
        status = relay_status(app.recorder, positions)
    assert (status.position, status.lag_events, status.lag_seconds) == (head, 0, 0.0)
    assert sum(expected.values()) == 3000
    seen = published_versions(kafka_bootstrap, topic_prefix)
    assert_complete_in_order(expected, seen, duplicates_allowed=False)


def _relay_process(pg_url: str, bootstrap: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRM_DATABASE_URL": pg_url,
        "CRM_KAFKA_BOOTSTRAP": bootstrap,
        "CRM_TOPIC_PREFIX": prefix,
        "CRM_LOG_FORMAT": "json",
    }
    with log.open("ab") as out:
        return subprocess.Popen([*CRM, "relay"], cwd=ROOT, env=env, stdout=out, stderr=out)


def test_killed_relay_resumes_without_gaps(
    app: CrmApplication, pg_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "relay.log"
    expected: dict[UUID, int] = {}
    for _ in range(3):
        process = _relay_process(pg_url, kafka_bootstrap, topic_prefix, log)
        try:
            expected.update(write_customers(app, customers=40, versions=10))
            time.sleep(0.5)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    expected.update(write_customers(app, customers=20, versions=5))  # written while down
    process = _relay_process(pg_url, kafka_bootstrap, topic_prefix, log)
    pool = ConnectionPool(pg_url, min_size=1, max_size=1, open=True)
    try:
        positions = PostgresRelayPosition(pool)
        head = app.head_position()
        wait_until(lambda: positions.load() >= head, 90, "restarted relay to catch up")
    finally:
        pool.close()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)
    assert returncode == 0, log.read_text()[-3000:]
    seen = published_versions(kafka_bootstrap, topic_prefix)
    assert_complete_in_order(expected, seen, duplicates_allowed=True)


# kafka-python 3.0.12 leaks the socket of every refused connect (kafka/net/inet.py
# sock_connect never closes it), which is what a stopped broker produces: collected here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_broker_outage_loses_nothing(private_services: PrivateServices, topic_prefix: str) -> None:
    """On the private broker: the shared one serves other tests meanwhile."""
    bootstrap = private_services.bootstrap
    with private_services.database() as pg_url:
        app = open_event_store(pg_url, None)
        try:
            with running_relay(app, pg_url, bootstrap, topic_prefix) as positions:
                expected = write_customers(app, customers=30, versions=5)
                wait_until(lambda: positions.load() >= app.head_position(), 60, "relay")
                try:
                    private_services.stop_broker()
                    expected.update(write_customers(app, customers=30, versions=5))
                    time.sleep(3)
                finally:
                    private_services.start_broker()
                expected.update(write_customers(app, customers=30, versions=5))
                head = app.head_position()
                wait_until(lambda: positions.load() >= head, 120, "relay to recover")
        finally:
            app.close()
    gc.collect()  # the leaked sockets, while this test's warning filters apply
    seen = published_versions(bootstrap, topic_prefix)
    assert_complete_in_order(expected, seen, duplicates_allowed=True)


def test_foreign_consumer_reads_every_attribute(
    app: CrmApplication, pg_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    with running_relay(app, pg_url, kafka_bootstrap, topic_prefix) as positions:
        expected = write_customers(app, customers=3, versions=2)
        wait_until(lambda: positions.load() >= app.head_position(), 60, "relay")
    from kafka import KafkaConsumer  # after consumers.kafka_io silenced its import warning

    consumer = KafkaConsumer(
        *all_topics(topic_prefix),
        bootstrap_servers=kafka_bootstrap,
        group_id=f"foreign-{uuid4().hex}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        messages = list(consumer)
    finally:
        consumer.close()
    assert len(messages) == sum(expected.values())
    for message in messages:
        _check_plain_json(message)
        _check_cloudevents_sdk(message)


def _check_plain_json(message: object) -> None:
    headers = dict(message.headers)  # type: ignore[attr-defined]
    assert headers["content-type"] == b"application/cloudevents+json"
    attrs = json.loads(message.value)  # type: ignore[attr-defined]
    required = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype"}
    extensions = {"aggregatetype", "aggregateversion", "position", "schemaversion", "actor"}
    extensions |= {"actordepartment", "correlationid"}
    assert required | extensions | {"data"} <= set(attrs)
    assert attrs["id"] == f"{attrs['subject']}/{attrs['aggregateversion']}"
    assert message.key == attrs["subject"].encode()  # type: ignore[attr-defined]
    assert attrs["data"]["originator_version"] == attrs["aggregateversion"]


def _check_cloudevents_sdk(message: object) -> None:
    kafka_message = KafkaMessage(
        headers=dict(message.headers),  # type: ignore[attr-defined]
        key=message.key,  # type: ignore[attr-defined]
        value=message.value,  # type: ignore[attr-defined]
    )
    event = from_structured(kafka_message, JSONFormat())
    attrs = json.loads(message.value)  # type: ignore[attr-defined]
    assert event.get_specversion() == "1.0"
    assert event.get_id() == attrs["id"]
    assert event.get_source() == "crm-collab"
    assert event.get_type() == attrs["type"]
    assert event.get_subject() == attrs["subject"]
    assert event.get_time() is not None
    assert event.get_datacontenttype() == "application/json"
    for name in ("aggregatetype", "aggregateversion", "position", "schemaversion", "actor"):
        assert event.get_extension(name) == attrs[name]
    assert event.get_data() is not None


class _SavedPositions(PostgresRelayPosition):
    """The real position store, noting every position saved: each page's last id."""

    def __init__(self, pool: ConnectionPool) -> None:
        super().__init__(pool)
        self.saved: list[int] = []

    def save(self, position: int) -> None:
        super().save(position)
        self.saved.append(position)


class _StopAtFirstWait:
    """A wake-up that stops the relay the first time it would wait for new events,
    noting the position stored by then."""

    def __init__(self, stop: threading.Event, positions: _SavedPositions) -> None:
        self._stop, self._positions = stop, positions
        self.waited_at: list[int] = []

    def wait(self, timeout: float) -> None:
        self.waited_at.append(self._positions.saved[-1] if self._positions.saved else 0)
        self._stop.set()

    def close(self) -> None:
        return None


def test_pages_cut_by_bytes_publish_everything_once_without_waiting(
    app: CrmApplication, pg_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    expected = write_customers(app, customers=6, versions=8)
    sizes = {n.id: len(n.state) for n in app.recorder.select_notifications(1, 1000)}
    head, budget = max(sizes), sum(sizes.values()) // 8
    ensure_topics(kafka_bootstrap, all_topics(topic_prefix), partitions=1)
    pool = ConnectionPool(pg_url, min_size=1, max_size=1, open=True)
    positions = _SavedPositions(pool)
    stop = threading.Event()
    wakeup = _StopAtFirstWait(stop, positions)
    relay = Relay(
        app.recorder,
        lambda: Producer(kafka_bootstrap),
        positions,
        topic_prefix=topic_prefix,
        wakeup=wakeup,
        page_bytes=budget,
    )
    try:
        relay.run(stop, idle_wait=3600)  # until it first waits: caught up, or not
    finally:
        relay.close()
        pool.close()
    assert wakeup.waited_at == [head]  # no wait between the pages cut by bytes
    bounds = [0, *positions.saved]  # every page's last id is stored once it is confirmed
    assert bounds == sorted(set(bounds)), bounds
    assert len(bounds) > 5, bounds  # the pages were cut by bytes
    for first, last in pairwise(bounds):
        page = [sizes[i] for i in range(first + 1, last + 1)]
        assert sum(page[:-1]) < budget, (first, last, page)
        assert last == head or sum(page) >= budget, (first, last, page)
    records = read_all(kafka_bootstrap, all_topics(topic_prefix))
    assert [from_cloudevent(r.value)[1] for r in records] == list(range(1, head + 1))
    assert_complete_in_order(
        expected, published_versions(kafka_bootstrap, topic_prefix), duplicates_allowed=False
    )


def test_unsafe_topics_are_refused(kafka_bootstrap: str, topic_prefix: str, pg_url: str) -> None:
    unsafe = {"retention.ms": "604800000", "cleanup.policy": "compact"}
    ensure_topics(kafka_bootstrap, all_topics(topic_prefix), partitions=1, config=unsafe)
    with pytest.raises(UnsafeTopics, match=r"crm\.customer\.v1: retention\.ms=604800000"):
        verify_topics(kafka_bootstrap, topic_prefix)
    verify_topics(kafka_bootstrap, topic_prefix, allow_unsafe=True)
    env = {
        **os.environ,
        "CRM_DATABASE_URL": pg_url,
        "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CRM_TOPIC_PREFIX": topic_prefix,
    }
    result = subprocess.run(
        [*CRM, "relay"], cwd=ROOT, env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 4, result.stderr
    assert b"cleanup.policy=compact" in result.stderr


def test_poison_event_stops_the_relay_naming_it(
    app: CrmApplication, pg_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    write_customers(app, customers=1, versions=1)
    bad_id = uuid4()
    app.recorder.insert_events(
        [StoredEvent(originator_id=bad_id, originator_version=1, topic="Nope@1", state=b"{}")]
    )
    ensure_topics(kafka_bootstrap, all_topics(topic_prefix), partitions=1)
    pool = ConnectionPool(pg_url, min_size=1, max_size=1, open=True)
    relay = Relay(
        app.recorder,
        lambda: Producer(kafka_bootstrap),
        PostgresRelayPosition(pool),
        topic_prefix=topic_prefix,
    )
    try:
        with pytest.raises(RelayPoisoned, match=rf"notification 2 \(aggregate {bad_id} version 1"):
            relay.publish_page()
        assert relay.position == 1  # what came before the poison is published
        assert PostgresRelayPosition(pool).load() == 1
    finally:
        relay.close()
        pool.close()
