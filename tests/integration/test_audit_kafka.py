"""`crm audit verify --kafka` and checkpoints on Kafka, against the real broker.

The relay publishes a chained store (SQLite or PostgreSQL); every record must carry
what the store holds, so a record whose payload was rewritten on the broker is an edit
at its position. Checkpoints are published to `crm.audit.checkpoints.v1`, by the
checkpointer the relay process runs: an intruder who truncates the store and deletes
the checkpoints beside it is still caught by the ones on Kafka.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from consumers.envelope import HEADERS, all_topics, read_cloudevent
from consumers.kafka_io import Producer, ensure_topics, read_all
from consumers.relay import Relay
from consumers.relay_position import MemoryRelayPosition, PostgresRelayPosition
from domain.chain_walk import BreakKind
from services.audit_kafka import kafka_comparison
from services.bootstrap import connect_pool
from services.checkpoint_topic import KafkaCheckpointPublisher, checkpoint_topic, read_checkpoints
from services.checkpointer import Checkpointer
from tests.e2e.processes import eventually
from tests.integration.audit_support import CRM, ROOT, Audited, audited, fill, positions, truncate


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Audited]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with audited(request.param, tmp_path, pg_url) as chained:
        yield chained


def _publish(store: Audited, bootstrap: str, prefix: str) -> None:
    """What `crm relay` does (its position in PostgreSQL, or in memory for SQLite)."""
    ensure_topics(bootstrap, all_topics(prefix), partitions=2)
    pool = connect_pool(store.env["CRM_DATABASE_URL"]) if store.backend == "postgres" else None
    positions = MemoryRelayPosition() if pool is None else PostgresRelayPosition(pool)
    relay = Relay(store.app.recorder, lambda: Producer(bootstrap), positions, topic_prefix=prefix)
    try:
        relay.drain()
    finally:
        relay.close()
        if pool is not None:
            pool.close()


def test_kafka_records_that_match_the_store_verify(
    store: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    fill(store.app)
    _publish(store, kafka_bootstrap, topic_prefix)
    _publish(store, kafka_bootstrap, topic_prefix + "again.")  # another topic set: no record
    kafka = kafka_comparison(kafka_bootstrap, topic_prefix, store.log.relay_position())
    report = store.verify((kafka,))
    assert report.broken is None
    assert kafka.records == len(positions(store))


def test_a_kafka_record_whose_payload_differs_from_the_store_is_an_edit(
    store: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    fill(store.app)
    _publish(store, kafka_bootstrap, topic_prefix)
    original = next(r for r in read_all(kafka_bootstrap, all_topics(topic_prefix)))
    envelope = read_cloudevent(original.value)
    data = bytes(envelope.data).replace(b'"actor":"agent-1"', b'"actor":"intruder"')
    assert data != bytes(envelope.data)
    rewritten = msgspec.json.encode(msgspec.structs.replace(envelope, data=msgspec.Raw(data)))
    with Producer(kafka_bootstrap) as producer:
        producer.confirm([producer.send(original.topic, original.key, rewritten, HEADERS)])
    kafka = kafka_comparison(kafka_bootstrap, topic_prefix, None)
    report = store.verify((kafka,))
    assert report.broken is not None
    assert (report.broken.kind, report.broken.position) == (BreakKind.EDITED, envelope.position)
    assert "Kafka record" in report.broken.detail


def test_kafka_shows_a_tail_removed_from_the_store(
    store: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    fill(store.app)
    _publish(store, kafka_bootstrap, topic_prefix)
    fill(store.app, customers=1)  # stored, not yet published: the relay is behind, fine
    assert store.verify((kafka_comparison(kafka_bootstrap, topic_prefix, None),)).broken is None
    stored = positions(store)
    truncate(store, stored[10])  # events and links, none signed yet
    alone = store.verify().broken  # SQLite: looks intact; PostgreSQL: below the relay's position
    if store.backend == "sqlite":
        assert alone is None
    else:
        assert alone is not None
        assert (alone.kind, alone.position) == (BreakKind.DELETED, store.log.relay_position())
    report = store.verify((kafka_comparison(kafka_bootstrap, topic_prefix, None),))
    assert report.broken is not None
    assert (report.broken.kind, report.broken.position) == (BreakKind.DELETED, stored[11])
    assert f"which now ends at {stored[10]}" in report.broken.detail


def test_checkpoints_on_kafka_catch_a_truncation_hidden_from_the_store(
    store: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    fill(store.app)
    publisher = KafkaCheckpointPublisher(kafka_bootstrap, topic_prefix)
    ensure_topics(kafka_bootstrap, [checkpoint_topic(topic_prefix)], partitions=1)
    signer = Checkpointer(store.log, store.key, every_events=1, every_seconds=1, publish=publisher)
    signed = signer.checkpoint()
    assert signed is not None
    assert signer.publish_pending() == 1
    assert signer.publish_pending() == 0
    publisher.close()
    assert list(read_checkpoints(kafka_bootstrap, topic_prefix)) == [signed]
    truncate(store, positions(store)[-5])
    store.sql(f"DELETE FROM {store.events}_checkpoints")
    assert store.verify().broken is None  # the store alone no longer shows it
    env = {"CRM_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRM_TOPIC_PREFIX": topic_prefix}
    result = store.crm_with(env, "audit", "verify", "--kafka")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN: deleted at position {signed.position}" in result.stdout


def test_the_relay_process_signs_and_publishes_checkpoints(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    with audited("postgres", tmp_path, pg_url) as store:
        env = {"CRM_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRM_TOPIC_PREFIX": topic_prefix}
        ensured = store.crm_with(env, "topics", "ensure")
        assert f"{topic_prefix}crm.audit.checkpoints.v1: created" in ensured.stdout
        fill(store.app)
        env |= {"CRM_AUDIT_CHECKPOINT_EVENTS": "5", "CRM_LOG_FORMAT": "json"}
        relay = subprocess.Popen(
            [*CRM, "relay"], cwd=ROOT, env=store.full_env(env),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            head = positions(store)[-1]
            published = eventually(
                lambda: next(
                    (
                        c
                        for c in read_checkpoints(kafka_bootstrap, topic_prefix)
                        if c.position == head
                    ),
                    None,
                ),
                what="a checkpoint at the head on Kafka",
            )
        finally:
            relay.terminate()
            relay.wait(timeout=30)
        assert published in store.log.checkpoints()
        assert store.verify().broken is None


def test_crm_audit_checkpoint_signs_now_and_publishes_beside_postgresql(
    store: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    fill(store.app)
    ensure_topics(kafka_bootstrap, [checkpoint_topic(topic_prefix)], partitions=1)
    env = {"CRM_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRM_TOPIC_PREFIX": topic_prefix}
    signed = store.crm_with(env, "audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    checkpoint = store.log.checkpoints()[0]
    assert checkpoint.position == positions(store)[-1]
    assert msgspec.json.encode(checkpoint).decode() in signed.stdout
    again = store.crm_with(env, "audit", "checkpoint")
    assert "nothing new to sign" in again.stdout
    on_kafka = list(read_checkpoints(kafka_bootstrap, topic_prefix))
    assert on_kafka == ([checkpoint] if store.backend == "postgres" else [])  # embedded: no Kafka
