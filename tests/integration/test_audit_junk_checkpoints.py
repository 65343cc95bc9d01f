"""`crm audit verify --kafka` with junk on `crm.audit.checkpoints.v1` (real Kafka and
PostgreSQL).

Anyone with produce rights can write a checkpoint there with a bad signature. It proves
nothing about the store: it is ignored with a warning, and the genuine checkpoints on
the topic still catch a truncation the intruder hid from the store. Without an
intrusion it fails nothing (retention is forever: it could never be removed). What the
auditor's own file holds is evidence: a bad signature there stays a break.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from consumers.kafka_io import Producer, ensure_topics
from domain.checkpoint import Checkpoint
from services.checkpoint_topic import HEADERS, KafkaCheckpointPublisher, checkpoint_topic
from services.checkpointer import Checkpointer
from tests.integration.audit_support import Audited, audited, fill, positions, truncate

pytestmark = pytest.mark.integration


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[Audited]:
    with audited("postgres", tmp_path, pg_url) as chained:
        yield chained


def _signed_and_published(store: Audited, bootstrap: str, prefix: str) -> Checkpoint:
    """What the relay's checkpointer does: sign the head, store it, publish it."""
    fill(store.app)
    publisher = KafkaCheckpointPublisher(bootstrap, prefix)
    ensure_topics(bootstrap, [checkpoint_topic(prefix)], partitions=1)
    signer = Checkpointer(store.log, store.key, every_events=1, every_seconds=1, publish=publisher)
    signed = signer.checkpoint()
    assert signed is not None
    assert signer.publish_pending() == 1
    publisher.close()
    return signed


def _produce_junk(bootstrap: str, prefix: str, checkpoint: Checkpoint) -> Checkpoint:
    """A checkpoint the key did not sign, as any client with produce rights sends one."""
    junk = msgspec.structs.replace(checkpoint, signature="00" * 64)
    with Producer(bootstrap, client_id="intruder") as producer:
        sent = producer.send(checkpoint_topic(prefix), b"k", msgspec.json.encode(junk), HEADERS)
        producer.confirm([sent])
    return junk


def _verify(store: Audited, bootstrap: str, prefix: str, *args: str) -> tuple[int, str]:
    env = {"CRM_KAFKA_BOOTSTRAP": bootstrap, "CRM_TOPIC_PREFIX": prefix}
    result = store.crm_with(env, "audit", "verify", "--kafka", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def test_a_junk_checkpoint_does_not_hide_a_truncation(
    store: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    signed = _signed_and_published(store, kafka_bootstrap, topic_prefix)
    truncate(store, positions(store)[-5])
    store.sql(f"DELETE FROM {store.events}_checkpoints")
    _produce_junk(kafka_bootstrap, topic_prefix, msgspec.structs.replace(signed, position=1))
    status, out = _verify(store, kafka_bootstrap, topic_prefix)
    assert status == 1, out
    assert f"BROKEN: deleted at position {signed.position}" in out
    assert "checkpoints  0 matched, 1 ignored" in out
    assert "warning      1 checkpoints on Kafka do not carry a valid signature" in out


def test_a_junk_checkpoint_over_an_intact_store_is_a_warning_not_a_break(
    store: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    signed = _signed_and_published(store, kafka_bootstrap, topic_prefix)
    _produce_junk(kafka_bootstrap, topic_prefix, signed)  # a copy, its signature changed
    status, out = _verify(store, kafka_bootstrap, topic_prefix)
    assert status == 0, out
    assert "result       intact" in out
    assert "checkpoints  1 matched, 1 ignored" in out
    assert f"claiming positions {signed.position})" in out


def test_a_badly_signed_checkpoint_in_the_auditors_file_stays_a_break(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """The file is the auditor's own evidence: a checkpoint there that fails is the kept
    copy altered (or the wrong key pinned), even when Kafka and the store hold the
    genuine one."""
    signed = _signed_and_published(store, kafka_bootstrap, topic_prefix)
    kept = tmp_path / "kept.jsonl"
    altered = msgspec.structs.replace(signed, signature="00" * 64)
    kept.write_bytes(msgspec.json.encode(altered) + b"\n")
    status, out = _verify(store, kafka_bootstrap, topic_prefix, "--checkpoints", str(kept))
    assert status == 1, out
    assert f"BROKEN: edited at position {signed.position}" in out
    assert "does not carry a valid signature of the pinned key" in out
