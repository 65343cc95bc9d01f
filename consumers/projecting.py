"""Applying one batch of events to one projection inside one read-model transaction.

Shared by the Kafka runner and the embedded follower. Inside the transaction:
lock the stored positions of the batch's partitions (a consumer that lost a
partition in a rebalance then waits and sees the new owner's offsets), drop records
already covered by them, skip aggregate versions already applied (the relay is
at-least-once), load every row the remaining events need in one query per table,
apply, and write rows, applied versions, positions and dead letters together.
An event whose `apply` raises becomes a dead letter and its offset still advances;
a database error propagates and the caller rolls back and retries the whole batch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple
from uuid import UUID

from consumers.readmodel_store import DeadLetter, PositionKey, Session, table_writes
from domain.base import DomainEvent
from projections.base import Batch, Key, KeyValues, Projection, Row


class Item(NamedTuple):
    """One record: where it came from, its raw bytes, and its event (None if undecodable).

    A tuple: a replay makes one per event, and tuples are the cheapest to build."""

    topic: str
    partition: int
    offset: int
    position: int
    value: bytes
    event: DomainEvent | None
    error: str | None = None


@dataclass
class Outcome:
    applied: int = 0
    skipped: int = 0
    dead: int = 0


def project(
    session: Session,
    projection: Projection,
    items: list[Item],
    lag: int | None = None,
    *,
    retry: bool = False,
) -> Outcome:
    """Apply `items` (in partition order) through `session`; see the module docstring.

    `retry` re-applies dead letters: no offset or version filter, positions untouched.
    """
    stored = session.lock_positions(sorted({(i.topic, i.partition) for i in items}))
    if retry:
        stored = {}
    fresh = [i for i in items if i.offset >= stored.get((i.topic, i.partition), 0)]
    events = [i.event for i in fresh if i.event is not None]
    applied = {} if retry else session.load_applied(list({e.originator_id for e in events}))
    batch = Batch(projection.tables, _load(session, projection, events))
    outcome = Outcome(skipped=len(items) - len(fresh))
    letters: list[DeadLetter] = []
    versions: dict[UUID, int] = {}
    for item in fresh:
        letter = _apply_one(
            projection, batch, item, applied=applied, versions=versions, outcome=outcome
        )
        if letter is not None:
            letters.append(letter)
    _write(session, projection, batch, versions, letters)
    if not retry:
        session.save_positions(_next_offsets(fresh))
    last = max((e.occurred_at for e in events), default=None)
    session.record_progress(outcome.applied, last, max((i.position for i in fresh), default=0), lag)
    return outcome


def _apply_one(
    projection: Projection,
    batch: Batch,
    item: Item,
    *,
    applied: dict[UUID, int],
    versions: dict[UUID, int],
    outcome: Outcome,
) -> DeadLetter | None:
    event = item.event
    if event is None:
        outcome.dead += 1
        return dead_letter(item, item.error or "undecodable record")
    if event.originator_version <= applied.get(event.originator_id, 0):
        outcome.skipped += 1
        return None
    applied[event.originator_id] = versions[event.originator_id] = event.originator_version
    try:
        batch.record(projection.apply(event, batch))
    except Exception as error:  # any failure of pure code is a dead letter, by design
        outcome.dead += 1
        return dead_letter(item, f"{type(error).__name__}: {error}")
    outcome.applied += 1
    return None


def _load(session: Session, projection: Projection, events: list[DomainEvent]) -> dict[Key, Row]:
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
    letters: list[DeadLetter],
) -> None:
    for segment in batch.segments:
        session.write(list(table_writes(batch.tables, segment)), segment.closing)
    session.save_applied(versions)
    if letters:
        session.add_dead_letters(letters)


def _next_offsets(items: list[Item]) -> dict[PositionKey, int]:
    offsets: dict[PositionKey, int] = {}
    for item in items:
        offsets[(item.topic, item.partition)] = item.offset + 1
    return offsets


def dead_letter(item: Item, error: str) -> DeadLetter:
    event = item.event
    return DeadLetter(
        event_id="" if event is None else f"{event.originator_id}:{event.originator_version}",
        topic=item.topic,
        partition=item.partition,
        offset=item.offset,
        position=item.position,
        aggregate_id=None if event is None else event.originator_id,
        aggregate_version=None if event is None else event.originator_version,
        event_type="" if event is None else event.wire_name(),
        error=error[:2000],
        payload=item.value,
    )
