"""Checkpoints on Kafka: topic `crm.audit.checkpoints.v1`, one JSON checkpoint per record.

One partition (the checkpoints are one sequence, read in order), retention forever like
the event topics; key = the signer's public key (hex), value = the checkpoint as
`GET /v1/audit/checkpoints` serves it, header `content-type: application/json`. A copy
outside the event store's database: an intruder who rewrites or truncates the store and
deletes the checkpoints kept beside it still faces these (`crm audit verify --kafka`).

I/O: Kafka through `consumers.kafka_io`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import closing

import msgspec
import structlog

from consumers import kafka_io, kafka_records
from domain import checkpoint as checkpoints
from domain.checkpoint import Checkpoint
from services.audit_kafka import read_topics
from services.checkpointer import PublishFailed

log = structlog.get_logger("crm.audit")

CHECKPOINT_TOPIC = "crm.audit.checkpoints.v1"
HEADERS = (("content-type", b"application/json"),)


def checkpoint_topic(prefix: str = "") -> str:
    return f"{prefix}{CHECKPOINT_TOPIC}"


def ensure_checkpoint_topic(bootstrap: str, prefix: str) -> list[str]:
    """Create the topic if missing (one partition, retention forever); the created."""
    return kafka_io.ensure_topics(bootstrap, [checkpoint_topic(prefix)], partitions=1)


class KafkaCheckpointPublisher:
    """The checkpointer's `Publisher`: sends, and waits for every acknowledgement."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self._bootstrap = bootstrap
        self._topic = checkpoint_topic(prefix)
        self._producer: kafka_io.Producer | None = None

    def __call__(self, signed: Sequence[Checkpoint]) -> None:
        records = [(self._topic, c.public_key.encode(), checkpoints.encode(c)) for c in signed]
        try:
            if self._producer is None:
                self._producer = kafka_io.Producer(self._bootstrap, client_id="crm-checkpoints")
            self._producer.confirm(self._producer.send_many(records, HEADERS), timeout=30)
        except kafka_records.KafkaFailure as error:
            self.close()
            raise PublishFailed(f"checkpoints not published: {error}") from error

    def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.close()


def read_checkpoints(bootstrap: str, prefix: str) -> Generator[Checkpoint, None, None]:
    """Every checkpoint on the topic, oldest first; records that are none (a null value
    too, or one kafka-python could not parse) are logged and passed over. Close it when
    done before its end (`contextlib.closing`: `kafka_io.read_all`)."""
    with closing(read_topics(bootstrap, [checkpoint_topic(prefix)])) as records:
        for record in records:
            try:
                yield checkpoints.decode(record.value)
            except msgspec.DecodeError as error:
                why = record.unreadable or str(error)
                log.warning("not a checkpoint", topic=record.topic, offset=record.offset, why=why)
