"""`crm audit verify-access --kafka`: every record on `crm.access.v1` is what the access log holds.

The topic is read once, from offset 0, and each record reduced to the position its key
names and a digest of its value. Then, as verify-access walks the store, each stored
record is compared with the records at its position: the relay publishes a record as
stored (`services.access_topic`), so the value must be the stored bytes exactly.
Duplicates (at-least-once) are fine. Every record read was published from the store
before the walk read it, so the store held each one then:

* `edited`: a record differs from what the store holds at its position;
* `deleted`: a record names a position the store lacks or one past its end (removed,
  though the intruder may have relinked the chain and lowered `crm_access_published`);
  or a stored record has no record on Kafka though a later one has (the relay publishes
  in order);
* `inserted`: a record whose key is not a position as the relay writes it, or that
  kafka-python could not parse (`kafka_records.Record.unreadable`).

A null value (a tombstone) is read as an empty one (`consumers.kafka_io`): at a position
the store holds, an edit.

I/O: Kafka (`services.audit_kafka.read_topics`), reading only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import closing
from typing import NamedTuple

from consumers import kafka_records
from consumers.as_stored import digest
from domain.chain_walk import Break, BreakKind, Entry
from services.access_topic import access_topic
from services.audit_kafka import read_topics

_POSITION_DIGITS = 19
"""A position is a positive bigint: at most 19 decimal digits (and `int` refuses to
parse past 4,300 digits: a longer key would be a traceback, not a finding)."""


class _Seen(NamedTuple):
    where: str
    value: bytes  # SHA-256 of the record's value


class AccessKafkaComparison:
    """Takes every record of the topic first; then `compare` each page of the access log
    and `finish` (a `services.audit_verify.Comparison`)."""

    def __init__(self, records: Iterable[kafka_records.Record]) -> None:
        self._seen: dict[int, list[_Seen]] = {}
        self.records = 0
        self.broken: Break | None = None
        for record in records:
            self._remember(record)
        self._highest = max(self._seen, default=0)

    def _remember(self, record: kafka_records.Record) -> None:
        self.records += 1
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if record.unreadable is not None:  # no relay wrote it
            self.broken = self.broken or Break(
                kind=BreakKind.INSERTED,
                position=0,
                detail=f"Kafka record {where}: {record.unreadable}",
            )
            return
        position = _position(record.key)
        if position is None:
            self.broken = self.broken or Break(
                kind=BreakKind.INSERTED,
                position=0,
                detail=f"Kafka record {where}: its key {record.key!r:.40} is not a position"
                " as the relay writes it",
            )
            return
        self._seen.setdefault(position, []).append(_Seen(where, digest(record.value)))

    def compare(self, entries: Sequence[Entry]) -> Break | None:
        """The first of `entries` (position, canonical bytes: the position's 8 bytes and
        the record as stored) that Kafka contradicts."""
        if self.broken is not None:
            return self.broken
        for position, canonical in entries:
            records = self._seen.pop(position, [])
            if not records and position <= self._highest:
                return Break(
                    kind=BreakKind.DELETED,
                    position=position,
                    detail=f"access record {position} was published (the relay publishes in"
                    " order, and a later one is on Kafka) but no record on Kafka carries it",
                )
            stored = digest(memoryview(canonical)[8:])
            if edited := next((seen for seen in records if seen.value != stored), None):
                return Break(
                    kind=BreakKind.EDITED,
                    position=position,
                    detail=f"Kafka record {edited.where} differs from access record"
                    f" {position} as stored",
                )
        return None

    def finish(self, first: int, last: int, end: int) -> Break | None:
        """Records never matched, from `first` up to `end`, after the walk of the store's
        positions `first..last`: published from the store, which no longer holds them."""
        if self.broken is not None:
            return self.broken
        stray = min((p for p in self._seen if first <= p <= end), default=None)
        if stray is None:
            return None
        named = f"Kafka record {self._seen[stray][0].where} (access record {stray})"
        where = "lacks that position" if stray <= last else f"now ends at {last}"
        return Break(
            kind=BreakKind.DELETED,
            position=stray,
            detail=f"{named} was published from the store, which {where}",
        )


def access_kafka_comparison(bootstrap: str, prefix: str) -> AccessKafkaComparison:
    """The comparison with every record now on the access topic (read from offset 0)."""
    with closing(read_topics(bootstrap, [access_topic(prefix)])) as records:
        return AccessKafkaComparison(records)


def _position(key: bytes | None) -> int | None:
    """The position a key names, spelt as the relay spells it (`str(position)`), else None."""
    if key is None or not 0 < len(key) <= _POSITION_DIGITS or not key.isdigit():
        return None
    position = int(key)
    return position if position > 0 and str(position).encode() == key else None
