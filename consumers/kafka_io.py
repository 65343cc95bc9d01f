"""The one Kafka adapter: producer, admin and consumer wrappers over kafka-python.

No other module imports `kafka`. Callers see bytes in, bytes out, and two project
exceptions: `BrokerUnavailable` (transient: retry later) and `KafkaFailure` (anything
else the broker refused), both in `consumers.kafka_records` with the records handed
out; the settings it gives kafka-python are in `consumers.kafka_settings`. Offsets are
never committed to Kafka: projections keep them in PostgreSQL beside their rows, so
`TopicConsumer` seeks where it is told.

Anyone who can produce to a topic can write what kafka-python will not hand over as a
record, and a consumer must read past it, not stop (the consumers reject it): a null
value (a tombstone) is read as `b""` (nothing here gives one a meaning: the topics are
never compacted), and a record kafka-python cannot parse (`_UNREADABLE`: a header name
that is not UTF-8, a codec not installed) is read as an empty `Record` saying why
(`unreadable`), the consumer moved past it (`_past_unreadable`).

I/O: network to the brokers named by `bootstrap`.
"""

from __future__ import annotations

import functools
import sys
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import structlog

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with importlib.resources.read_text,
    # deprecated since 3.11: harmless, but pytest turns warnings into errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka import errors as kerrors
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.partitioner.default import DefaultPartitioner, murmur2
    from kafka.structs import TopicPartition

from consumers.kafka_records import (
    BrokerUnavailable,
    Consumed,
    Headers,
    KafkaFailure,
    Record,
    TopicPartitionKey,
)
from consumers.kafka_settings import (
    CLOSE_TIMEOUT_MS,
    CONSUMER_FETCH,
    END_OFFSETS_TIMEOUT_MS,
    PRODUCER_DEFAULTS,
    SAFE_TOPIC_CONFIG,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


def _translate(error: BaseException) -> KafkaFailure:
    transient = (kerrors.RetriableError, kerrors.BrokerNotAvailableError)
    if isinstance(error, transient) or getattr(error, "retriable", False):
        return BrokerUnavailable(f"Kafka broker unavailable: {error}")
    return KafkaFailure(f"Kafka error: {error}")


def _guarded(call: Callable[[], T]) -> T:
    """Run `call`, turning kafka-python errors into the project's exceptions."""
    try:
        return call()
    except kerrors.KafkaError as error:
        raise _translate(error) from error


# --- producer ------------------------------------------------------------------------


class SendResult:
    """A pending acknowledgement; `wait()` raises a project exception on failure."""

    def __init__(self, future: Any) -> None:
        self._future = future

    def wait(self, timeout: float | None = None) -> tuple[int, int]:
        """(partition, offset) once the broker has acknowledged the record."""
        metadata = _guarded(lambda: self._future.get(timeout=timeout))
        return int(metadata.partition), int(metadata.offset)

    @property
    def succeeded(self) -> bool:
        return bool(self._future.is_done and self._future.succeeded())


class KeyHashCachingPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """kafka-python's default partitioner (murmur2 of the key, as the Java client),
    with the hashes of recent keys memoized: its pure-Python murmur2 costs ~8 us a
    record, and the events of one aggregate share a key. Same partitions, less CPU."""

    def __init__(self, cached_keys: int = 65536) -> None:
        self._hash = functools.lru_cache(maxsize=cached_keys)(murmur2)

    def partition(  # noqa: PLR0917 - kafka-python's Partitioner signature
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            chosen: int = super().partition(
                topic, key, serialized_key, value, serialized_value, cluster
            )
            return chosen
        ordered = sorted(partitions)
        return int(ordered[(self._hash(serialized_key) & 0x7FFFFFFF) % len(ordered)])


class Producer:
    """Idempotent producer. `send` queues; `flush` waits for every acknowledgement."""

    def __init__(self, bootstrap: str, *, client_id: str = "crm", **overrides: Any) -> None:
        config = {"partitioner": KeyHashCachingPartitioner(), **PRODUCER_DEFAULTS, **overrides}
        self._producer: Any = _guarded(
            lambda: KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, **config)
        )

    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()
    ) -> SendResult:
        future = _guarded(
            lambda: self._producer.send(topic, key=key, value=value, headers=list(headers))
        )
        return SendResult(future)

    def send_many(
        self, records: Iterable[tuple[str, bytes | None, bytes]], headers: Headers = ()
    ) -> list[SendResult]:
        """`send` for each (topic, key, value), all with the same headers."""
        send, shared = self._producer.send, list(headers)
        try:
            return [SendResult(send(t, key=k, value=v, headers=shared)) for t, k, v in records]
        except kerrors.KafkaError as error:
            raise _translate(error) from error

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued record is acknowledged or has failed."""
        _guarded(lambda: self._producer.flush(timeout=timeout))

    def confirm(
        self, results: Sequence[SendResult], timeout: float | None = None, *, flush: bool = True
    ) -> None:
        """Wait until every one of `results` is acknowledged; raise the first failure.

        `flush=True` also sends whatever is lingering at once (for latency) and waits
        for every queued record; `flush=False` waits for `results` only, so records
        queued after them keep filling batches (for throughput).
        """
        if flush:
            self.flush(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        for result in results:
            if not result.succeeded:  # wait() returns at once for the finished ones
                result.wait(None if deadline is None else max(deadline - time.monotonic(), 0))

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._producer.close(timeout=timeout)
        except kerrors.KafkaError as error:
            log.warning("kafka producer close failed", error=str(error))

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- admin ---------------------------------------------------------------------------


def _admin(bootstrap: str, timeout_ms: int = 10000) -> Any:
    return _guarded(
        lambda: KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="crm-admin",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
    )


def check_broker(bootstrap: str, timeout: float = 5.0) -> None:
    """Return once the cluster answers an admin round trip; `BrokerUnavailable` if no
    broker does within `timeout`."""
    admin = _admin(bootstrap, timeout_ms=int(timeout * 1000))
    try:
        _guarded(admin.describe_cluster)
    finally:
        admin.close()


def ensure_topics(
    bootstrap: str,
    names: Sequence[str],
    partitions: int = 3,
    config: dict[str, str] | None = None,
) -> list[str]:
    """Create the missing topics (with `SAFE_TOPIC_CONFIG` by default); return the created."""
    configs = dict(SAFE_TOPIC_CONFIG if config is None else config)
    admin = _admin(bootstrap)
    try:
        existing = set(_guarded(admin.list_topics))
        missing = [name for name in names if name not in existing]
        if missing:
            spec = {
                name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs}
                for name in missing
            }
            _create(admin, spec)
        return missing
    finally:
        admin.close()


def _create(admin: Any, spec: dict[str, dict[str, Any]]) -> None:
    try:
        admin.create_topics(spec, timeout_ms=10000, wait_for_metadata=True)
    except kerrors.TopicAlreadyExistsError:
        admin.wait_for_topics(list(spec))  # created concurrently by another process
    except kerrors.KafkaError as error:
        raise _translate(error) from error


def describe_topic_configs(bootstrap: str, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Effective config values per existing topic (missing topics are left out)."""
    admin = _admin(bootstrap)
    try:
        existing = set(_guarded(admin.list_topics))
        wanted = [name for name in names if name in existing]
        if not wanted:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
        raw = _guarded(lambda: admin.describe_configs(resources, config_filter="all"))
        topics: dict[str, dict[str, Any]] = raw.get("topic", {})
        return {
            name: {key: str(entry.get("value")) for key, entry in entries.items()}
            for name, entries in topics.items()
        }
    finally:
        admin.close()


def list_topics(bootstrap: str) -> list[str]:
    """The names of every topic on the cluster."""
    admin = _admin(bootstrap)
    try:
        return sorted(_guarded(admin.list_topics))
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Delete topics (tests and benchmarks clean up after themselves)."""
    admin = _admin(bootstrap)
    try:
        existing = set(_guarded(admin.list_topics))
        doomed = [name for name in names if name in existing]
        if doomed:
            _guarded(lambda: admin.delete_topics(doomed, timeout_ms=10000))
    finally:
        admin.close()


# --- consumers -----------------------------------------------------------------------


def _record(message: Any) -> Record:
    """kafka-python's record as ours (a null value as `b""`); its headers already are
    (str, bytes) pairs. A `Record` (`_past_unreadable`'s) as it is."""
    if isinstance(message, Record):
        return message
    headers = tuple(message.headers) if message.headers else ()
    value = b"" if message.value is None else message.value
    return Record(message.topic, message.partition, message.offset, message.key, value, headers)


def _valued(message: Any) -> Any:
    """A kafka-python record whose value is null (a tombstone), with `b""` instead."""
    return message._replace(value=b"")


_UNREADABLE = (kerrors.CorruptRecordError, kerrors.UnsupportedCodecError)
"""What kafka-python raises out of `poll` for a record it cannot parse: a header name
that is not UTF-8 (any client but kafka-python can write one), a broken record
structure, a batch compressed with a codec whose library is not installed."""


Suspects = dict[Any, int]
"""Per partition, the offset at which kafka-python last failed to parse a record, to be
fetched afresh before anything is passed over (`_past_unreadable`)."""


def _polled(consumer: Any, timeout_ms: int, suspects: Suspects) -> dict[Any, list[Any]]:
    """`consumer.poll`, except that a record kafka-python cannot parse comes back as an
    unreadable `Record` (`_past_unreadable`), alone."""
    try:
        polled: dict[Any, list[Any]] = consumer.poll(timeout_ms=timeout_ms)
    except _UNREADABLE as error:
        partition = _stuck_partition(consumer)
        if partition is None:
            raise
        return _past_unreadable(consumer, partition, error, suspects)
    for partition in polled:
        suspects.pop(partition, None)
    return polled


def _past_unreadable(
    consumer: Any, partition: Any, error: Exception, suspects: Suspects
) -> dict[Any, list[Any]]:
    """The record at `partition`'s position, which kafka-python failed to parse, as an
    unreadable `Record` once a fresh fetch from that very offset failed there again; the
    consumer is then moved past it (what the Java client's error asks for: "please seek
    past the record to continue consumption").

    The first failure at an offset only drops the records kafka-python holds and
    fetches again from it (nothing is returned): kafka-python takes a record's offset
    from the delta its producer wrote, and the broker does not check those of an
    uncompressed batch, so a batch lying about them put the position on the relay's
    next genuine record, which was passed over as unreadable (red team). A fetch from
    that offset reads the batch the broker holds there: the genuine one parses, and
    only a record that is itself unreadable fails again at the same offset.

    A batch holding such a record is one client's (the relay's hold none), and
    kafka-python, fetching any of its later offsets, reads the batch again from its
    start and fails at the same record: its later records are each passed over this
    way too, two polls each."""
    offset = int(consumer.position(partition))
    if suspects.get(partition) != offset:
        suspects[partition] = offset
        _drop_held(consumer)
        consumer.seek(partition, offset)
        return {}
    del suspects[partition]
    consumer.seek(partition, offset + 1)
    text = str(error)
    why = f"unreadable record: {text[:200]}"  # kafka-python quotes the whole bad header
    where = {"topic": partition.topic, "partition": partition.partition, "offset": offset}
    log.warning("kafka_record_unreadable", **where, error=text[:200])
    record = Record(partition.topic, partition.partition, offset, None, b"", (), why)
    return {partition: [record]}


def _stuck_partition(consumer: Any) -> Any:
    """The partition whose record kafka-python just failed to parse; None if it cannot
    tell (then the caller raises: polling again would not get past it).

    kafka-python names no partition in the error, and keeps the failed partition's
    records in hand (`Fetcher._next_partition_records`, private): their iterator has
    ended, yet is not marked drained, so the next `poll` takes nothing from them
    forever, at 100 % CPU (kafka-python 3.0.12). A `seek` to another offset makes it
    drop them. This reads that private state, and only here; the unit test
    `tests/unit/consumers/test_unreadable_records.py` pins the behaviour relied on."""
    held = getattr(getattr(consumer, "_fetcher", None), "_next_partition_records", None)
    if not held:  # None, or records already drained: not what failed
        return None
    return getattr(held, "topic_partition", None)


def _drop_held(consumer: Any) -> None:
    """Make kafka-python drop the records it holds of the partition that failed, so the
    next `poll` fetches again (a `seek` to the same offset would take them again, and
    spin): the same private state `_stuck_partition` reads."""
    consumer._fetcher._next_partition_records = None


class _SeekingListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks newly assigned partitions to the offsets the owner stored beside its rows."""

    def __init__(self, owner: TopicConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._owner.on_revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        keys = [(tp.topic, tp.partition) for tp in assigned]
        try:
            offsets = self._owner.on_assigned(keys) if keys else {}
        except Exception as error:  # kafka-python wraps it: `poll` raises it unwrapped
            self._owner.assignment_error = error
            raise
        consumer = self._owner.kafka
        for tp in assigned:
            offset = offsets.get((tp.topic, tp.partition))
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)


def _ignore(_: list[TopicPartitionKey]) -> None:
    return None


class TopicConsumer:
    """A consumer-group member that never commits to Kafka (offsets live in PostgreSQL)."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        *,
        on_assigned: Callable[[list[TopicPartitionKey]], dict[TopicPartitionKey, int]],
        on_revoked: Callable[[list[TopicPartitionKey]], None] = _ignore,
        max_poll_records: int = 2000,
        client_id: str | None = None,
    ) -> None:
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.assignment_error: Exception | None = None
        self._topics = list(topics)
        self.kafka: Any = _guarded(
            lambda: KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group_id,
                client_id=client_id or group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=max_poll_records,
                **CONSUMER_FETCH,
            )
        )
        self.kafka.subscribe(list(topics), listener=_SeekingListener(self))
        self._suspects: Suspects = {}

    def poll(self, timeout_ms: int = 500) -> list[Consumed]:
        """The next records, in offset order per partition. An exception of `on_assigned`
        is raised as it is (after kafka-python finished the rebalance)."""
        try:
            batches = _polled(self.kafka, timeout_ms, self._suspects)
        except kerrors.KafkaError as error:
            failed, self.assignment_error = self.assignment_error, None
            if failed is not None:
                raise failed from error
            raise _translate(error) from error
        return [
            message if message.value is not None else _valued(message)
            for messages in batches.values()
            for message in messages
        ]

    def end_offsets(self, *, every_partition: bool = False) -> dict[TopicPartitionKey, int]:
        """The next offset to be written per assigned partition (for lag), or per partition
        of the subscribed topics. `BrokerUnavailable` after `END_OFFSETS_TIMEOUT_MS`."""
        if every_partition:
            wanted = _partitions(self.kafka, self._topics)
        else:
            wanted = list(self.kafka.assignment())
        if not wanted:
            return {}
        ends = _guarded(lambda: self.kafka.end_offsets(wanted, timeout_ms=END_OFFSETS_TIMEOUT_MS))
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        """Leave the group; within `CLOSE_TIMEOUT_MS` even if the coordinator is gone."""
        self.kafka.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)

    def __enter__(self) -> TopicConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_all(
    bootstrap: str, topics: Sequence[str], *, until_end: bool = True, poll_ms: int = 500
) -> Generator[Record, None, None]:
    """Every record of `topics` from offset 0 without a group; stops at the end seen at
    start when `until_end`, else follows forever. Per partition, in offset order; one
    kafka-python cannot parse is a `Record` saying so (`unreadable`).

    Close it (`contextlib.closing`) when done with it before its end: the consumer is
    closed then. One left to the garbage collector at interpreter exit (abandoned by an
    exception, say) is not closed: kafka-python's close would wait for its network
    thread, stopped by then, and the process would never end."""
    consumer: Any = _guarded(
        lambda: KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    )
    try:
        parts = _partitions(consumer, topics)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = _guarded(lambda: consumer.end_offsets(parts)) if until_end else {}
        remaining = {tp for tp in parts if ends.get(tp, 1) > 0} if until_end else set(parts)
        suspects: Suspects = {}
        while remaining:
            for tp, messages in _guarded(lambda: _polled(consumer, poll_ms, suspects)).items():
                yield from (_record(message) for message in messages)
                if until_end and consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        if not sys.is_finalizing():  # see the docstring
            consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)


def _partitions(consumer: Any, topics: Sequence[str]) -> list[Any]:
    parts: list[Any] = []
    for topic in topics:
        numbers: set[int] = _guarded(partial(consumer.partitions_for_topic, topic)) or set()
        parts.extend(TopicPartition(topic, number) for number in sorted(numbers))
    return parts
