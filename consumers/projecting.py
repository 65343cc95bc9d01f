"""Applying one batch of events to one projection inside one read-model transaction.

Shared by the Kafka runner and the embedded follower. Inside the transaction:
lock the stored positions of the batch's partitions (a consumer that lost a
partition in a rebalance then waits and sees the new owner's offsets), drop records
already covered by them, skip aggregate versions already applied (the relay is
at-least-once), load every row the remaining events need in one query per table,
apply, and write rows, applied versions, positions and dead letters together.
An event whose `apply` raises becomes a dead letter and its offset still advances.

`commit` runs that transaction. A transient error of the store (connection lost, disk
full, database locked) propagates: the caller retries the whole batch later, nothing
is lost. Any other failure is caused by some event's values (one a store cannot hold,
or a bug in the writing code), so `commit` finds the events that fail by halving the
batch, in order, and writes each as a dead letter with the error: one bad event never
stops a projection, and `crm projections retry` re-applies it after a fix.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from typing import NamedTuple
from uuid import UUID

from consumers.readmodel_store import (
    DeadLetter,
    PositionKey,
    ReadModelStore,
    Session,
    StoredLetter,
    table_writes,
)
from domain.base import DomainEvent
from projections.base import Batch, Fact, Key, KeyValues, Projection, Row, SearchTerms


class Item(NamedTuple):
    """One record: where it came from, its raw bytes, and its event (None if undecodable).
    An `error` makes it a dead letter: why it could not be decoded, or written. `terms`:
    the search terms the consumer derived from the event, applied right after it.

    A tuple: a replay makes one per event, and tuples are the cheapest to build."""

    topic: str
    partition: int
    offset: int
    position: int
    value: bytes
    event: DomainEvent | None
    error: str | None = None
    terms: SearchTerms | None = None


_partition: Callable[[Item], PositionKey] = attrgetter("topic", "partition")
_offset = attrgetter("offset")
_position = attrgetter("position")
_occurred_at = attrgetter("occurred_at")


@dataclass
class Outcome:
    applied: int = 0
    skipped: int = 0
    dead: int = 0

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            self.applied + other.applied, self.skipped + other.skipped, self.dead + other.dead
        )


def commit(
    store: ReadModelStore,
    projection: Projection,
    generation: int,
    items: list[Item],
    lag: int | None = None,
    *,
    retry: bool = False,
) -> Outcome:
    """`project` in one transaction, the events that make it fail dead-lettered (see the
    module docstring); raises only the store's transient errors, or an error that even
    a dead letter cannot be written through."""
    try:
        with store.session(projection, generation) as session:
            return project(session, projection, items, lag, retry=retry)
    except store.transient_errors:
        raise
    except Exception as error:  # an event's values: found by halving, by design
        if len(items) <= 1:
            if not items or items[0].error is not None:
                raise
            failed = items[0]._replace(error=f"{type(error).__name__}: {error}")
            return commit(store, projection, generation, [failed], lag, retry=retry)
    half = len(items) // 2
    first = commit(store, projection, generation, items[:half], lag, retry=retry)
    return first + commit(store, projection, generation, items[half:], lag, retry=retry)


def retry_letters(
    store: ReadModelStore,
    projection: Projection,
    items_of: Callable[[list[StoredLetter]], list[Item]],
) -> tuple[int, int]:
    """Re-apply the live generation's dead letters, read back as items by `items_of`:
    (retried, still failing). Those failing again are dead letters again (`commit`)."""
    generation = store.install(projection)
    with store.session(projection, generation) as session:
        letters = session.dead_letters()
    items = items_of(letters)
    return len(items), commit(store, projection, generation, items, retry=True).dead


def project(
    session: Session,
    projection: Projection,
    items: list[Item],
    lag: int | None = None,
    *,
    retry: bool = False,
) -> Outcome:
    """Apply `items` (in partition order) through `session`; see the module docstring.

    `retry` re-applies dead letters: no offset or version filter, positions untouched,
    and the items' dead letters dropped (those failing again are written anew).
    """
    lowest, last = _offset_ranges(items)
    stored = session.lock_positions(sorted(last))
    if retry:
        stored = {}
        session.drop_dead_letters([(i.topic, i.partition, i.offset) for i in items])
    fresh, next_offsets = _fresh(items, stored, lowest, last)
    events = [i.event for i in fresh if i.event is not None]
    aggregates = {e.originator_id.int: e.originator_id for e in events}  # see `_Versions`
    versions = _Versions({} if retry else session.load_applied(list(aggregates.values())))
    facts: list[Fact] = [*events, *(i.terms for i in fresh if i.terms is not None)]
    batch = Batch(projection.tables, _load(session, projection, facts))
    outcome = Outcome(skipped=len(items) - len(fresh))
    letters = _apply_all(projection, batch, fresh, versions, outcome)
    _write(session, projection, batch, versions.taken(), letters)
    if not retry:
        session.save_positions(next_offsets)
    newest = max(map(_occurred_at, events), default=None)
    session.record_progress(outcome.applied, newest, max(map(_position, fresh), default=0), lag)
    return outcome


class _Versions:
    """The last version of each aggregate: which events to skip, and what to save.

    Kept by `UUID.int`: a UUID hashes in Python (`uuid.UUID.__hash__`, about a thousand
    instructions) and its int in C, and a replay looks up every event's aggregate twice.
    """

    def __init__(self, stored: dict[UUID, int]) -> None:
        self._last = {aggregate.int: version for aggregate, version in stored.items()}
        self._taken: dict[int, DomainEvent] = {}

    def take(self, event: DomainEvent) -> bool:
        """Whether `event` is newer than its aggregate's last version (and now the last)."""
        number, version = event.originator_id.int, event.originator_version
        if version <= self._last.get(number, 0):
            return False
        self._last[number] = version
        self._taken[number] = event
        return True

    def taken(self) -> dict[UUID, int]:
        """The last version taken per aggregate (the ones to save)."""
        return {e.originator_id: e.originator_version for e in self._taken.values()}


def _apply_all(
    projection: Projection, batch: Batch, items: list[Item], versions: _Versions, outcome: Outcome
) -> list[DeadLetter]:
    """Apply the items in order into `batch`; the dead letters.

    The loop body runs for every event of a replay, hence one loop here rather than a
    call per item.
    """
    apply, record = projection.apply, batch.record
    letters: list[DeadLetter] = []
    for item in items:
        event = item.event
        if event is None:
            outcome.dead += 1
            letters.append(dead_letter(item, item.error or "undecodable record"))
        elif not versions.take(event):
            outcome.skipped += 1
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
                letters.append(dead_letter(item, f"{type(error).__name__}: {error}"))
            else:
                outcome.applied += 1
    return letters


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
    letters: list[DeadLetter],
) -> None:
    for segment in batch.segments:
        session.write(list(table_writes(batch.tables, segment)), segment.closing)
    session.save_applied(versions)
    if letters:
        session.add_dead_letters(letters)


def _offset_ranges(items: list[Item]) -> tuple[dict[PositionKey, int], dict[PositionKey, int]]:
    """The lowest and the last offset of each partition in `items`.

    By runs of one partition (how records arrive), so the per-item work runs in C.
    """
    lowest: dict[PositionKey, int] = {}
    last: dict[PositionKey, int] = {}
    for key, run in groupby(items, _partition):
        offsets = list(map(_offset, run))
        low = min(offsets)
        if low < lowest.get(key, low + 1):
            lowest[key] = low
        last[key] = offsets[-1]
    return lowest, last


def _fresh(
    items: list[Item],
    stored: dict[PositionKey, int],
    lowest: dict[PositionKey, int],
    last: dict[PositionKey, int],
) -> tuple[list[Item], dict[PositionKey, int]]:
    """The items not covered by the stored positions, and the positions after them.

    Usually all of them, which one comparison per partition shows; items are filtered
    one by one only when some partition's lowest offset was stored already.
    """
    if all(offset >= stored.get(key, 0) for key, offset in lowest.items()):
        return items, {key: offset + 1 for key, offset in last.items()}
    fresh = [i for i in items if i.offset >= stored.get((i.topic, i.partition), 0)]
    return fresh, _next_offsets(fresh)


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
