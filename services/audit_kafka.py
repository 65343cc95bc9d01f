"""`crm audit verify --kafka`: every record on the event topics carries what the store holds.

The topics are read once, from offset 0, and each record reduced to a digest of its
value and the attributes that name its event (position, subject, version, type, schema
version, data). Then, as the verify walks the store, each stored event is compared with
the records at its position: the record must be exactly what the relay makes of the
stored row today (`consumers.relay.encode_notification`), or, for an event stored in
an older schema version (which the relay of its time published as stored, and today's
relay would upcast), carry the stored bytes unchanged under the same identity, type and
schema version (`consumers.as_stored.unlike`, the rule by which consumers too
refuse records). Duplicates (at-least-once) are fine. Where the records sit is checked
too, as the relay places them: all of an aggregate's records in one partition of its
topic, its versions in order there (repeats aside). A genuine record copied into
another partition, or ahead of the versions it follows, carries exactly what the store
holds, and consumers that read it early reject it (`consumers.projecting`); this finds
it however it was read.

* `edited`: a record differs from the store;
* `deleted`: a stored event the relay has published (up to its position) has no record;
* `inserted`: a record names a position among the store's that it does not hold, or is
  a copy out of its place (another partition than its aggregate's others, or a version
  ahead of the ones it follows), or is no CloudEvent of the contract at all (a null
  value, one kafka-python could not parse: `consumers.kafka_io`);
* `deleted` too: a record names a position past the store's end (its tail was removed).

I/O: Kafka (`consumers.kafka_io`), reading only.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterable, Sequence
from contextlib import closing
from typing import NamedTuple
from uuid import UUID

from consumers import kafka_io, kafka_records
from consumers.as_stored import digest, unlike, upcast_on_publication
from consumers.envelope import CloudEvent, InvalidEnvelope, all_topics, read_cloudevent
from consumers.relay import RelayPoisoned, encode_notification
from domain.chain_walk import Break, BreakKind, Entry
from domain.hashchain import CanonicalEvent


class _Seen(NamedTuple):
    where: str
    topic: str
    key: bytes | None
    value: bytes  # SHA-256 of the record's value
    data: bytes  # SHA-256 of its `data`
    type: str  # interned: a few dozen types over every record read
    schema: int
    subject: str
    version: int


class _Notification(NamedTuple):
    """What `encode_notification` reads of a stored event."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


class Placement:
    """Whether records sit where the relay puts them: all of an aggregate's records in
    one partition of its topic, its versions one after another there, again maybe from
    an earlier one (the relay's re-sends), so that those read in a partition always
    form one unbroken range. Records come in offset order per partition
    (`kafka_io.read_all`)."""

    def __init__(self) -> None:
        self._placed: dict[tuple[str, str], tuple[int, int, int]] = {}
        """(topic, aggregate) -> (its partition, the lowest and highest version read)."""

    def check(self, topic: str, partition: int, aggregate: str, version: int) -> str | None:
        """Why the next record, of `aggregate` at `version`, is out of its place; None
        when it is where the relay would have put it."""
        key = (topic, aggregate)
        where, low, high = self._placed.get(key, (partition, version, version))
        if where != partition:
            return (
                f"is in partition {partition}, the aggregate's other records in {where}: one"
                " of them is a copy"
            )
        if version < low:
            return f"comes after version {low} in its partition: that one is a copy put ahead"
        if version > high + 1:
            return f"comes before version {high + 1} in its partition: it is a copy put ahead"
        self._placed[key] = (where, low, max(high, version))
        return None


class KafkaComparison:
    """Takes every record of the topics first; then `compare` each page of the log."""

    def __init__(
        self, records: Iterable[kafka_records.Record], prefix: str, relay_position: int | None
    ) -> None:
        self._prefix = prefix
        self._seen: dict[int, list[_Seen]] = {}
        self._placement = Placement()
        self.out_of_place: list[Break] = []
        """The records not where the relay puts them (`finish` reports the first)."""
        self.records = 0
        self.broken: Break | None = None
        for record in records:
            self._remember(record)
        highest = max(self._seen, default=0)
        self._bound = highest if relay_position is None else min(highest, relay_position)

    def _remember(self, record: kafka_records.Record) -> None:
        self.records += 1
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        envelope = _envelope(record)
        if isinstance(envelope, str):  # no relay wrote it
            self.broken = self.broken or Break(
                kind=BreakKind.INSERTED, position=0, detail=f"Kafka record {where}: {envelope}"
            )
            return
        seen = _Seen(
            where, record.topic, record.key, digest(record.value), digest(envelope.data),
            sys.intern(envelope.type), envelope.schemaversion, envelope.subject,
            envelope.aggregateversion,
        )  # fmt: skip
        self._seen.setdefault(envelope.position, []).append(seen)
        misplaced = self._placement.check(
            record.topic, record.partition, seen.subject, seen.version
        )
        if misplaced is not None:
            self.out_of_place.append(Break(
                kind=BreakKind.INSERTED, position=envelope.position,
                detail=f"Kafka record {where} ({seen.subject} version {seen.version}) {misplaced}",
            ))  # fmt: skip

    def compare(self, entries: Sequence[Entry]) -> Break | None:
        if self.broken is not None:
            return self.broken
        for position, canonical in entries:
            records = self._seen.pop(position, [])
            if not records and position <= self._bound:
                event = CanonicalEvent(canonical)
                return Break(
                    kind=BreakKind.DELETED,
                    position=position,
                    detail=f"{event} was published (the relay is past it) but no record"
                    " on Kafka carries it",
                )
            for seen in records:
                if not self._matches(seen, CanonicalEvent(canonical)):
                    return Break(
                        kind=BreakKind.EDITED,
                        position=position,
                        detail=f"Kafka record {seen.where} differs from "
                        f"{CanonicalEvent(canonical)} as stored",
                    )
        return None

    def _matches(self, seen: _Seen, event: CanonicalEvent) -> bool:
        stored = _Notification(
            event.position, event.aggregate_id, event.version, event.topic, event.state
        )
        try:
            topic, key, value = encode_notification(stored, self._prefix)
        except RelayPoisoned:
            return False
        if (seen.topic, seen.key, seen.value) == (topic, key, digest(value)):
            return True
        if not upcast_on_publication(event.topic):
            return False  # today's relay makes exactly this record: any difference is an edit
        same_data = seen.data == digest(event.state)
        return (seen.topic, seen.key, seen.subject, seen.version) == (
            topic, key, str(event.aggregate_id), event.version,
        ) and unlike(seen.type, seen.schema, same_data, event.topic) is None  # fmt: skip

    def finish(self, first: int, last: int, end: int) -> Break | None:
        """Records never matched: within the store's positions `first..last` they name
        events it never held (inserted on Kafka); past its end, up to `end`, events it
        no longer holds (every record read was published before the store's end was
        read, so the store once held them: deleted from the store). Else the first
        record out of its place in `first..end`, if any (after every other break: a
        record the store lacks, or one deleted, also leaves a range broken). A record
        that is no CloudEvent comes first, as in `compare`, which a walk of an empty
        store never calls."""
        if self.broken is not None:
            return self.broken
        stray = sorted(p for p in self._seen if first <= p <= end)
        if not stray:
            return next((b for b in self.out_of_place if first <= b.position <= end), None)
        seen = self._seen[stray[0]][0]
        named = f"Kafka record {seen.where} ({seen.subject} version {seen.version})"
        if stray[0] <= last:
            return Break(
                kind=BreakKind.INSERTED,
                position=stray[0],
                detail=f"{named} names a position the store never held",
            )
        return Break(
            kind=BreakKind.DELETED,
            position=stray[0],
            detail=f"{named} was published from the store, which now ends at {last}",
        )


def _envelope(record: kafka_records.Record) -> CloudEvent | str:
    """The record's CloudEvent, or why it is none: not one of this contract (a null value
    too), or a record kafka-python could not parse (`kafka_records.Record.unreadable`)."""
    if record.unreadable is not None:
        return record.unreadable
    try:
        return read_cloudevent(record.value)
    except InvalidEnvelope as error:
        return str(error)


def kafka_comparison(bootstrap: str, prefix: str, relay_position: int | None) -> KafkaComparison:
    """The comparison with every record now on the event topics (read from offset 0)."""
    with closing(read_topics(bootstrap, all_topics(prefix))) as records:
        return KafkaComparison(records, prefix, relay_position)


def read_topics(bootstrap: str, topics: list[str]) -> Generator[kafka_records.Record, None, None]:
    """Every record of those of `topics` that exist (none were published to the others).
    Close it when done before its end (`contextlib.closing`: `kafka_io.read_all`)."""
    existing = sorted(kafka_io.describe_topic_configs(bootstrap, topics))
    if existing:
        yield from kafka_io.read_all(bootstrap, existing)
