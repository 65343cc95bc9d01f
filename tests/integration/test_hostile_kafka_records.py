"""Records no relay writes, which kafka-python hands over oddly or not at all, stop no
reader (real PostgreSQL and Kafka).

Anyone who can produce to a topic can write a tombstone (a null value), a value that is
not UTF-8, or a header name that is not UTF-8 (kafka-python cannot parse that record:
`poll` raised, and polled again spun at 100 % CPU). Each once stopped `crm consume`,
`crm projections rebuild` and `crm audit verify --kafka` / `verify-access --kafka` for
good (the audit commands then never exited). Now consumers reject each (a rejected
record, offset committed) and apply the genuine events behind it; a rebuild gives the
same rows; the audit commands report it and exit; the checkpoint reader passes it over.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from structlog.testing import capture_logs

from consumers.envelope import HEADERS, topic_name
from consumers.kafka_io import Producer, ensure_topics
from consumers.store_postgres import PostgresStore
from domain.chain_walk import BreakKind
from domain.checkpoint import encode
from domain.customer import Customer
from services.access_topic import access_topic
from services.audit_kafka import kafka_comparison
from services.checkpoint_topic import KafkaCheckpointPublisher, checkpoint_topic, read_checkpoints
from services.checkpointer import Checkpointer
from tests.e2e.processes import eventually
from tests.integration.audit_support import Audited, audited, fill
from tests.integration.projection_support import pg_keyring, tables_of
from tests.integration.test_access_log_tail import Logged, _published, logged  # noqa: F401
from tests.integration.test_audit_kafka import _publish
from tests.integration.test_forged_records import crm, ctx, dead_letters, pipeline, rejected

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # see test_runner
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


class RawName(str):
    """A header name that goes on the wire as bytes that are not UTF-8 (any client but
    kafka-python writes one as asked; kafka-python is made to here)."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe"


Sent = tuple[bytes | None, Sequence[tuple[str, bytes]]]
"""(value, headers) of one record an intruder sends."""
TOMBSTONE: Sent = (None, HEADERS)
NOT_UTF8: Sent = (b'{"specversion": "\xff"}', HEADERS)
BAD_HEADER: Sent = (b"{}", [(RawName("x"), b"")])
HOSTILE: dict[str, list[Sent]] = {
    "tombstone": [TOMBSTONE],
    "value-not-utf8": [NOT_UTF8],
    "header-name-not-utf8": [BAD_HEADER, (b"{}", HEADERS)],  # one batch: both unreadable
}
NO_VALUE = (
    "InvalidEnvelope: not a CloudEvent of this contract: no value (empty, or null: a tombstone)"
)
BAD_UTF8 = (
    "InvalidEnvelope: not a CloudEvent of this contract: 'utf-8' codec can't decode byte 0xff"
    " in position 0: invalid start byte"
)
UNREADABLE = (
    "unreadable record: [Error 2] CorruptRecordError: Found invalid record structure:"
    " UnicodeDecodeError('utf-8', b'\\xff\\xfe', 0, 1, 'invalid start byte')"
)


def intrude(bootstrap: str, topic: str, key: bytes | None, sent: list[Sent]) -> None:
    """`sent` as another client produces them: in one record batch, as one send does."""
    with Producer(bootstrap, client_id="intruder", linger_ms=1000) as producer:
        results = [producer.send(topic, key, value, headers) for value, headers in sent]  # type: ignore[arg-type]
        producer.confirm(results)


def _customers(store: PostgresStore) -> dict[Any, Any]:
    return {row["customer_id"]: row for row in tables_of(store, "shared")["customers"]}


def test_records_no_relay_writes_are_rejected_and_the_events_behind_them_apply(
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
            ctx("sales"), customer_id=uuid4(), name="Ada", owner_department="sales"
        )
        pipe.record(ada)
        pipe.relay()
        for name, sent in HOSTILE.items():  # in Ada's partition, ahead of her next event
            intrude(kafka_bootstrap, topic_name("customer", live), str(ada.id).encode(), sent)
            ada.tag(ctx("sales"), f"after-{name}")
            pipe.record(ada)
            pipe.relay()

        runs = [crm(*at, live, "consume", "shared", "--until-caught-up") for _ in range(2)]
        consumed, refused = tables_of(store, "shared"), rejected(store, "shared")
        letters, counted = dead_letters(store, "shared"), store.status("shared").rejected
        rebuilt = crm(*at, live, "projections", "rebuild", "shared")
        rebuilt_tables, rebuilt_refused = tables_of(store, "shared"), rejected(store, "shared")
        rebuilt_counted = store.status("shared").rejected
        clean_build = crm(*at, clean, "projections", "rebuild", "shared")
        clean_tables = tables_of(store, "shared")

    for done in (*runs, rebuilt, clean_build):
        assert done.returncode == 0, done.stderr[-2000:]
    tags = {f"after-{name}" for name in HOSTILE}
    assert set(_row(consumed, ada.id)["tags"].split(",")) == tags
    assert refused == rebuilt_refused
    assert set(refused) == {NO_VALUE, BAD_UTF8, UNREADABLE}
    assert counted == rebuilt_counted == 4  # the header's batch: two records
    assert letters == []
    assert consumed == rebuilt_tables == clean_tables


def _row(tables: dict[str, Any], customer: Any) -> dict[str, Any]:
    return next(row for row in tables["customers"] if row["customer_id"] == customer)


def test_a_running_consumer_reads_past_an_unreadable_record(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """`crm consume` following the topics meets the record live, and keeps going."""
    env = {**os.environ, "CRM_DATABASE_URL": pg_url, "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "CRM_TOPIC_PREFIX": topic_prefix, "CRM_LOG_LEVEL": "warning"}  # fmt: skip
    with (
        pg_keyring(pg_url) as keyring,
        pipeline(pg_url, keyring, kafka_bootstrap, topic_prefix, f"{topic_prefix}c.") as pipe,
        closing(PostgresStore(pg_url)) as store,
    ):
        ada = Customer.register(
            ctx("sales"), customer_id=uuid4(), name="Ada", owner_department="sales"
        )
        pipe.record(ada)
        pipe.relay()
        consumer = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "consume", "shared"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            eventually(lambda: _known(store, ada.id), what="Ada in the read model")
            topic, key = topic_name("customer", topic_prefix), str(ada.id).encode()
            for name, sent in HOSTILE.items():
                intrude(kafka_bootstrap, topic, key, sent)
                ada.tag(ctx("sales"), name)
                pipe.record(ada)
                pipe.relay()
                eventually(partial(_tagged, store, ada.id, name), what=f"the tag {name}")
                assert consumer.poll() is None, "crm consume exited"
        finally:
            consumer.terminate()
            _, stderr = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, stderr[-2000:]


def _known(store: PostgresStore, customer: Any) -> bool:
    return store.live_generation("shared") is not None and customer in _customers(store)


def _tagged(store: PostgresStore, customer: Any, tag: str) -> bool:
    return tag in str(_customers(store)[customer]["tags"]).split(",")


@pytest.fixture
def chained(pg_url: str, tmp_path: Path) -> Iterator[Audited]:
    with audited("postgres", tmp_path, pg_url) as store:
        yield store


@pytest.mark.parametrize("name", list(HOSTILE))
def test_crm_audit_verify_kafka_reports_such_a_record_and_exits(
    chained: Audited, kafka_bootstrap: str, topic_prefix: str, name: str
) -> None:
    fill(chained.app)
    chained.sign()
    _publish(chained, kafka_bootstrap, topic_prefix)
    intrude(kafka_bootstrap, topic_name("customer", topic_prefix), b"k", HOSTILE[name])
    report = chained.verify((kafka_comparison(kafka_bootstrap, topic_prefix, None),))
    assert report.broken is not None
    assert report.broken.kind == BreakKind.INSERTED
    env = {"CRM_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRM_TOPIC_PREFIX": topic_prefix}
    result = chained.crm_with(env, "audit", "verify", "--kafka")  # once: never exited
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN: inserted" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr


def test_crm_audit_verify_access_kafka_reports_such_records_and_exits(
    logged: Logged,  # noqa: F811 - the fixture imported above
    kafka_bootstrap: str,
    topic_prefix: str,
) -> None:
    _published(logged, kafka_bootstrap, topic_prefix)
    topic = access_topic(topic_prefix)
    intrude(kafka_bootstrap, topic, b"2", [TOMBSTONE])  # once: sha256(None), and no exit
    edited = logged.verify("--kafka")
    assert edited.returncode == 1, edited.stdout + edited.stderr
    assert "edited at position 2" in edited.stderr
    intrude(kafka_bootstrap, topic, b"3", [BAD_HEADER])
    inserted = logged.verify("--kafka")
    assert inserted.returncode == 1, inserted.stdout + inserted.stderr
    assert "inserted at position 0" in inserted.stderr
    assert "unreadable record" in inserted.stderr
    assert "Traceback" not in edited.stderr + inserted.stderr


def test_records_on_the_checkpoint_topic_that_are_no_checkpoints_are_passed_over(
    chained: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    fill(chained.app)
    ensure_topics(kafka_bootstrap, [checkpoint_topic(topic_prefix)], partitions=1)
    publisher = KafkaCheckpointPublisher(kafka_bootstrap, topic_prefix)
    signer = Checkpointer(chained.log, chained.key, every_events=1, every_seconds=1)
    signed = signer.checkpoint()
    assert signed is not None
    not_utf8 = encode(signed).replace(signed.signature.encode(), b"\xff\xfe")
    topic = checkpoint_topic(topic_prefix)
    hostile: list[list[Sent]] = [[TOMBSTONE], [(not_utf8, HEADERS)], [BAD_HEADER]]
    for sent in hostile:
        intrude(kafka_bootstrap, topic, b"k", sent)
    try:
        publisher([signed])
    finally:
        publisher.close()
    with capture_logs() as logs:
        read = list(read_checkpoints(kafka_bootstrap, topic_prefix))
    assert read == [signed]
    passed = [entry for entry in logs if entry["event"] == "not a checkpoint"]
    assert [entry["offset"] for entry in passed] == [0, 1, 2]
    assert passed[2]["why"].startswith("unreadable record: ")


ABANDONING = """
import sys
from consumers.kafka_io import read_all
records = read_all(sys.argv[1], [sys.argv[2]])
next(records)
raise RuntimeError("the reader stops half way")
"""


def test_a_reader_abandoned_by_an_error_lets_the_process_exit(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """What kept `crm audit verify-access --kafka` running for good after its error:
    `read_all` closing its consumer while the interpreter exits."""
    topic = topic_name("customer", topic_prefix)
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    intrude(kafka_bootstrap, topic, b"k", [(b"x", HEADERS), (b"y", HEADERS)])
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", ABANDONING, kafka_bootstrap, topic],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "RuntimeError: the reader stops half way" in done.stderr
