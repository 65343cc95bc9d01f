"""Records kafka-python cannot parse, and null values, are read past, not stopped at (no
broker: kafka-python's own fetcher is fed record batches built in memory, as a broker
would answer a fetch).

These pin the kafka-python behaviour `consumers.kafka_io._stuck_partition` relies on
(3.0.12): a header name that is not UTF-8 makes `poll` raise `CorruptRecordError`
naming no partition; the partition's records stay in `Fetcher._next_partition_records`,
not drained though nothing more comes of them (the next `poll` would spin at 100 % CPU
taking nothing); the position is the failed record's offset; and a `seek` past it frees
the fetcher. If an upgrade changes any of this, these fail first.
"""

from __future__ import annotations

import struct
import warnings
from types import SimpleNamespace
from typing import Any

import pytest

from consumers import kafka_io
from consumers.kafka_records import Record

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # see consumers.kafka_io
    from kafka import KafkaConsumer
    from kafka import errors as kerrors
    from kafka.consumer.fetcher import CompletedFetch
    from kafka.record.default_records import DefaultRecordBatchBuilder
    from kafka.structs import TopicPartition

pytestmark = pytest.mark.timeout(30)  # a spinning fetcher must fail, not hang for 300 s

TP = TopicPartition("t", 0)
Entry = tuple[bytes | None, list[tuple[str, bytes]]]
"""(value, headers) of one record."""


class RawName(str):
    """A header name kafka-python writes as bytes that are not UTF-8 (any other client
    can write such a name)."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe"


BAD: Entry = (b"{}", [(RawName("x"), b"")])


def _batch(base: int, entries: list[Entry], claimed: dict[int, int] | None = None) -> bytes:
    """One record batch (magic 2, uncompressed) at offsets `base`... (what one producer's
    send of these records becomes on the broker); record i claims offset delta
    `claimed[i]` if given (the broker checks no delta of an uncompressed batch)."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for place, (value, headers) in enumerate(entries):
        delta = (claimed or {}).get(place, place)
        builder.append(delta, timestamp=None, key=b"k", value=value, headers=headers)
    built = builder.build()
    struct.pack_into(">q", built, 0, base)  # the base offset, which the broker assigns
    return bytes(built)


class Broker:
    """A partition's log of batches, answering fetches as a broker does: from the start
    of the batch holding the fetched offset."""

    def __init__(
        self, *batches: list[Entry], claimed: dict[int, dict[int, int]] | None = None
    ) -> None:
        self.log: list[tuple[int, int, bytes]] = []
        base = 0
        for number, entries in enumerate(batches):
            lies = (claimed or {}).get(number)
            self.log.append((base, base + len(entries), _batch(base, entries, lies)))
            base += len(entries)
        self.end = base

    def fetch(self, offset: int) -> bytes:
        return b"".join(data for _, end, data in self.log if end > offset)


class OfflineConsumer:
    """A real `KafkaConsumer` (never connected) whose `poll` answers from `broker`
    through kafka-python's own fetcher; `position`, `seek` and its state are its own."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.kafka: Any = KafkaConsumer(
            bootstrap_servers="127.0.0.1:1", api_version=(2, 6), group_id=None,
            enable_auto_commit=False, metrics_enabled=False,
        )  # fmt: skip
        self.kafka.assign([TP])
        self.kafka.seek(TP, 0)
        self._fetcher: Any = self.kafka._fetcher

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        fetcher = self._fetcher
        if not fetcher._next_partition_records and not fetcher._completed_fetches:
            offset = self.kafka.position(TP)
            answer = SimpleNamespace(
                error_code=0, high_watermark=self.broker.end, diverging_epoch=None,
                records=self.broker.fetch(offset), aborted_transactions=None,
                preferred_read_replica=-1,
            )  # fmt: skip
            fetcher._completed_fetches.append(CompletedFetch(TP, offset, 11, answer, None))
        records: dict[Any, list[Any]] = fetcher.fetched_records()[0]
        return records

    def position(self, partition: Any) -> int:
        return int(self.kafka.position(partition))

    def seek(self, partition: Any, offset: int) -> None:
        self.kafka.seek(partition, offset)

    def close(self) -> None:
        self.kafka.close(autocommit=False, timeout_ms=100)


def _read(consumer: OfflineConsumer) -> list[Record]:
    """Every record of the log through `kafka_io._polled`, as `read_all` reads them."""
    read: list[Record] = []
    suspects: kafka_io.Suspects = {}
    while consumer.position(TP) < consumer.broker.end:
        for records in kafka_io._polled(consumer, 0, suspects).values():
            read += [kafka_io._record(r) for r in records]
    return read


@pytest.fixture
def offline() -> Any:
    made: list[OfflineConsumer] = []

    def make(*batches: list[Entry], claimed: dict[int, dict[int, int]] | None = None) -> Any:
        made.append(OfflineConsumer(Broker(*batches, claimed=claimed)))
        return made[-1]

    yield make
    for consumer in made:
        consumer.close()


def test_kafka_python_stays_stuck_on_a_header_name_that_is_not_utf8(offline: Any) -> None:
    """What `_stuck_partition` relies on, and why it exists."""
    consumer = offline([(b"a", []), BAD, (b"c", [])])
    assert [r.value for r in consumer.poll()[TP]] == [b"a"]  # the error held back
    with pytest.raises(kerrors.CorruptRecordError, match="UnicodeDecodeError"):
        consumer.poll()
    held = consumer._fetcher._next_partition_records
    assert held  # not drained, though it ended:
    assert held.topic_partition == TP
    assert held.take() == []  # the next poll would take nothing from it, forever
    assert consumer.position(TP) == 1  # the offset of the record that failed
    consumer.seek(TP, 2)
    assert consumer.poll() == {}  # dropped at once, as obsolete: no spin
    assert held.record_iterator is None


def test_a_header_name_that_is_not_utf8_is_read_as_an_unreadable_record(offline: Any) -> None:
    consumer = offline([(b"a", [])], [BAD], [(b"c", [])])
    read = _read(consumer)
    assert [(r.offset, r.value, r.unreadable is None) for r in read] == [
        (0, b"a", True), (1, b"", False), (2, b"c", True),
    ]  # fmt: skip
    unreadable = read[1].unreadable
    assert unreadable is not None
    assert unreadable.startswith("unreadable record: [Error 2] CorruptRecordError")


def test_the_rest_of_a_batch_after_an_unreadable_record_is_passed_over(offline: Any) -> None:
    """kafka-python reads the batch again from its start for any of its offsets, and
    fails at the same record: each later one is passed over too (one client wrote the
    whole batch), and the next batch is read as usual."""
    consumer = offline([(b"a", []), BAD, (b"b", []), (b"b", [])], [(b"c", [])])
    read = _read(consumer)
    assert [(r.offset, r.value) for r in read] == [
        (0, b"a"), (1, b""), (2, b""), (3, b""), (4, b"c"),
    ]  # fmt: skip
    assert [r.unreadable is not None for r in read] == [False, True, True, True, False]


def test_a_batch_lying_about_its_offsets_does_not_pass_over_the_next_genuine_record(
    offline: Any,
) -> None:
    """Red team: an intruder's batch (true offsets 1-3) whose second record claims the
    third's offset put kafka-python's position on the relay's record after it (4) when
    its unreadable third record failed; that genuine record was passed over as
    unreadable, and every later version of its aggregate rejected as out of order. A
    fresh fetch from 4 reads the relay's batch, which parses."""
    lying = [(b"{}", []), (b"{}", []), BAD]
    consumer = offline([(b"a", [])], lying, [(b"c", [])], claimed={1: {1: 2}})
    read = _read(consumer)
    assert (read[-1].offset, read[-1].value, read[-1].unreadable) == (4, b"c", None)
    assert all(r.unreadable is None for r in read)


def test_an_error_with_no_partition_held_is_raised(offline: Any) -> None:
    """Without the failed partition in hand, polling again would not get past it."""

    class Failing(OfflineConsumer):
        def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
            raise kerrors.CorruptRecordError("somewhere")

    consumer = offline([(b"a", [])])
    failing = Failing(consumer.broker)
    try:
        with pytest.raises(kerrors.CorruptRecordError):
            kafka_io._polled(failing, 0, {})
    finally:
        failing.close()


def test_a_null_value_is_read_as_empty(offline: Any) -> None:
    consumer = offline([(None, []), (b"b", [])])
    polled = consumer.poll()[TP]
    assert [r.value for r in polled] == [None, b"b"]  # kafka-python's own records
    assert [kafka_io._record(r).value for r in polled] == [b"", b"b"]  # read_all's
    assert [kafka_io._valued(r).value for r in polled[:1]] == [b""]  # TopicConsumer's
