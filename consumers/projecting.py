"""Applying one batch of events to one projection inside one read-model transaction.

Shared by the Kafka runner and the embedded follower. Inside the transaction:
lock the stored positions of the batch's partitions (a consumer that lost a
partition in a rebalance then waits and sees the new owner's offsets), drop records
already covered by them, apply each aggregate's versions one after another (below),
load every row the remaining events need in one query per table, apply, and write
rows, applied versions, positions, dead letters and rejected records together.
An event whose `apply` raises becomes a dead letter and its offset still advances.

Order: the event store numbers an aggregate's events 1, 2, 3... and the relay
publishes them in that order to one partition, again and again maybe (at-least-once),
so a projection meets each aggregate's versions in order, with repeats. A version at
or below the last one applied is a repeat, and skipped. A version past the next one
cannot come from the relay: it is a genuine record copied to another partition or
topic, read before the versions it follows (which would then be skipped as repeats
and lost). It is *rejected*, and the genuine record applies in its turn.

Dead letters and rejected records: a dead letter is an event the read model lacks (it
did not decode, or its rows could not be written); readiness waits for it and
`crm projections retry` re-applies it after a fix. A rejected record (`Item.refused`,
or out of order) lacks nothing: the event store does not hold it as published
(`consumers.as_stored`), or its genuine twin applies in its turn. It is recorded with
its reason, never applied, never retried, and readiness does not wait for it: whoever
can produce to the topics must not be able to take the API out of service.

`consumers.batch_commit` runs that transaction, and dead-letters the events that make
it fail. Which versions of an aggregate are taken is `consumers.aggregate_versions`;
which records the stored positions cover, `consumers.batch_offsets`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple
from uuid import UUID

import msgspec

from consumers.aggregate_versions import EARLY, REPEAT, TAKEN, Versions
from consumers.batch_offsets import fresh_items, offset_ranges
from consumers.readmodel_store import DeadLetter, Rejected, Session, table_writes
from domain.base import DomainEvent
from projections.base import Batch, Fact, Key, KeyValues, Projection, Row, SearchTerms

Origin = tuple[UUID, int]
"""(aggregate id, version) of an event."""


class _Origin(msgspec.Struct):
    """The two fields every event's codec JSON holds, whatever its type (`DomainEvent`)."""

    originator_id: UUID
    originator_version: int


_origin_of = msgspec.json.Decoder(_Origin)


def origin_of(data: bytes | memoryview) -> Origin | None:
    """The origin in an event's codec JSON, or None if it holds none (for a genuine
    record whose event does not decode: its version is taken all the same)."""
    try:
        origin = _origin_of.decode(data)
    except msgspec.DecodeError:
        return None
    return origin.originator_id, origin.originator_version


class Item(NamedTuple):
    """One record: where it came from, its raw bytes, and its event (None if undecodable).
    An `error` makes it a dead letter: why it could not be decoded, or written; with
    `refused`, a rejected record instead (see the module docstring). `terms`: the search
    terms the consumer derived from the event, applied right after it. `origin`: the
    (aggregate, version) of a genuine record whose event did not decode, so that its
    version is taken like any other.

    A tuple: a replay makes one per event, and tuples are the cheapest to build."""

    topic: str
    partition: int
    offset: int
    position: int
    value: bytes
    event: DomainEvent | None
    error: str | None = None
    terms: SearchTerms | None = None
    refused: bool = False
    origin: Origin | None = None


_position = attrgetter("position")
_occurred_at = attrgetter("occurred_at")


@dataclass
class Outcome:
    applied: int = 0
    skipped: int = 0
    dead: int = 0
    rejected: int = 0

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            self.applied + other.applied, self.skipped + other.skipped,
            self.dead + other.dead, self.rejected + other.rejected,
        )  # fmt: skip


def project(
    session: Session,
    projection: Projection,
    items: list[Item],
    lag: int | None = None,
    *,
    retry: bool = False,
    in_order: bool = True,
) -> Outcome:
    """Apply `items` (in partition order) through `session`; see the module docstring.

    `retry` re-applies dead letters: no offset, version or order filter, positions
    untouched, and the items' dead letters dropped (those failing again are written anew).
    Not `in_order`: the items are some of each aggregate's events (a report of the
    surveys alone), so a version past the next one is no sign of a copy.
    """
    lowest, last = offset_ranges(items)
    stored = session.lock_positions(sorted(last))
    if retry:
        stored = {}
        session.drop_dead_letters([(i.topic, i.partition, i.offset) for i in items])
    fresh, next_offsets = fresh_items(items, stored, lowest, last)
    events = [i.event for i in fresh if i.event is not None]
    aggregates = {e.originator_id.int: e.originator_id for e in events}  # see `Versions`
    aggregates.update((o[0].int, o[0]) for i in fresh if (o := i.origin) is not None)
    applied = {} if retry else session.load_applied(list(aggregates.values()))
    versions = Versions(applied, in_order=in_order and not retry)
    facts: list[Fact] = [*events, *(i.terms for i in fresh if i.terms is not None)]
    batch = Batch(projection.tables, _load(session, projection, facts))
    outcome = Outcome(skipped=len(items) - len(fresh))
    letters, rejected = _apply_all(projection, batch, fresh, versions, outcome)
    _write(session, projection, batch, versions.taken(), letters=letters, rejected=rejected)
    if not retry:
        session.save_positions(next_offsets)
    newest = max(map(_occurred_at, events), default=None)
    session.record_progress(outcome.applied, newest, max(map(_position, fresh), default=0), lag)
    return outcome


def _apply_all(
    projection: Projection, batch: Batch, items: list[Item], versions: Versions, outcome: Outcome
) -> tuple[list[DeadLetter], list[Rejected]]:
    """Apply the items in order into `batch`; the dead letters and rejected records.

    The loop body runs for every event of a replay, hence one loop here rather than a
    call per item.
    """
    apply, record, take = projection.apply, batch.record, versions.take
    letters: list[DeadLetter] = []
    rejected: list[Rejected] = []
    for item in items:
        event = item.event
        if event is None:
            _unapplied(item, versions, outcome, letters, rejected)
            continue
        order = take(event.originator_id, event.originator_version)
        if order == REPEAT:
            outcome.skipped += 1
        elif order == EARLY:
            outcome.rejected += 1
            rejected.append(_early(item, (event.originator_id, event.originator_version), versions))
        elif item.error is not None:  # its writes failed (`commit`): taken, not applied
            outcome.dead += 1
            letters.append(dead_letter(item, item.error))
        else:
            try:
                record(apply(event, batch))
                if item.terms is not None:
                    record(apply(item.terms, batch))
            except Exception as error:  # any failure of pure code is a dead letter, by design
                outcome.dead += 1
                letters.append(dead_letter(item, reason(error)))
            else:
                outcome.applied += 1
    return letters, rejected


def _unapplied(
    item: Item,
    versions: Versions,
    outcome: Outcome,
    letters: list[DeadLetter],
    rejected: list[Rejected],
) -> None:
    """An item without an event: a refused record, or a genuine one that did not decode
    (a dead letter whose version, when known, is taken like any other)."""
    if item.refused:
        outcome.rejected += 1
        why = item.error or "not a record of the event store"
        rejected.append(Rejected(item.topic, item.partition, item.offset, item.position, why))
        return
    origin = item.origin
    order = TAKEN if origin is None else versions.take(*origin)
    if order == REPEAT:
        outcome.skipped += 1
    elif order == EARLY and origin is not None:
        outcome.rejected += 1
        rejected.append(_early(item, origin, versions))
    else:
        outcome.dead += 1
        letters.append(dead_letter(item, item.error or "undecodable record"))


def _early(item: Item, origin: Origin, versions: Versions) -> Rejected:
    aggregate, version = origin
    why = (
        f"out of order: version {version} of aggregate {aggregate} before version"
        f" {versions.last(aggregate) + 1} (a copy of a record, read before the ones it follows)"
    )
    return Rejected(item.topic, item.partition, item.offset, item.position, why)


def _load(session: Session, projection: Projection, events: list[Fact]) -> dict[Key, Row]:
    wanted: dict[str, set[KeyValues]] = defaultdict(set)
    for event in events:
        for table, key in projection.keys(event):
            wanted[table].add(key)
    loaded: dict[Key, Row] = {}
    for spec in projection.tables:
        if wanted.get(spec.name):
            for row in session.load_rows(spec, list(wanted[spec.name])):
                loaded[(spec.name, spec.key_of(row))] = row
    return loaded


def _write(
    session: Session,
    projection: Projection,
    batch: Batch,
    versions: dict[UUID, int],
    *,
    letters: list[DeadLetter],
    rejected: list[Rejected],
) -> None:
    for segment in batch.segments:
        session.write(list(table_writes(batch.tables, segment)), segment.closing)
    session.save_applied(versions)
    if letters:
        session.add_dead_letters(letters)
    if rejected:
        session.add_rejected(rejected)


def reason(error: Exception) -> str:
    """What a dead letter says of the error that made it: its type and message."""
    return f"{type(error).__name__}: {error}"


def dead_letter(item: Item, error: str) -> DeadLetter:
    event = item.event
    origin = item.origin if event is None else (event.originator_id, event.originator_version)
    return DeadLetter(
        event_id="" if origin is None else f"{origin[0]}:{origin[1]}",
        topic=item.topic,
        partition=item.partition,
        offset=item.offset,
        position=item.position,
        aggregate_id=None if origin is None else origin[0],
        aggregate_version=None if origin is None else origin[1],
        event_type="" if event is None else event.wire_name(),
        error=error,
        payload=item.value,
    )
