"""Rebuild, verify and retry: the maintenance operations on one projection.

* `rebuild`: fill a new generation from offset 0 beside the live one (with its own
  consumer group and offsets), catch up, then `switch` the stable views to it in one
  transaction and drop the old one. The live `crm consume` notices and moves on to
  the new generation from that generation's stored offsets: nothing is lost.
* `verify`: the same into a scratch generation, then compare every table with the
  live one row by row; the scratch generation is dropped either way.
* `retry`: re-apply the dead letters (they stay dead letters if they fail again); the
  embedded default's are retried from the event store (`consumers.follower`).

All of them read through `consumers.hand_over` and apply through `consumers.projecting`,
so they too apply only records that the event store holds at their positions
(`consumers.as_stored`), each aggregate's versions in order: a forged or copied record
on the topics is rejected in a rebuild as in the live consumer, and a dead letter an
older version kept of one becomes a rejected record on retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumers.as_stored import StoredEvents
from consumers.batch_commit import Retried, retry_letters
from consumers.hand_over import decode
from consumers.keyring import Keyring
from consumers.projecting import Item
from consumers.readmodel_store import ReadModelStore, StoredLetter, switch_or_drop
from consumers.runner import ProjectionRunner, group_id
from projections.base import Projection, Row

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Source:
    """Where the events come from: the broker and the projection's topics; and what
    the records are checked against (the event store) and opened with (the keyring)."""

    bootstrap: str
    topics: list[str]
    keyring: Keyring
    stored: StoredEvents
    topic_prefix: str  # the topics' (`CRM_TOPIC_PREFIX`), which the rebuild's group carries


def build_generation(
    store: ReadModelStore, projection: Projection, source: Source, progress: Progress | None
) -> int:
    """A new generation of `projection`, filled from offset 0 until no lag remains."""
    generation = store.create_generation(projection)
    runner = ProjectionRunner(
        store, projection.name, source.keyring, source.stored, source.bootstrap, source.topics,
        group=f"{group_id(projection.name, source.topic_prefix)}.v{generation}",
        generation=generation,
        on_batch=None if progress is None else (lambda written: progress(written.events)),
    )  # fmt: skip
    try:
        runner.run(until_caught_up=True)
    except BaseException:
        store.drop_generation(projection.name, generation)
        raise
    return generation


def rebuild(
    store: ReadModelStore, projection: Projection, source: Source, progress: Progress | None = None
) -> int:
    """Rebuild beside the live generation and switch to it atomically; the new generation."""
    store.install(projection)
    generation = build_generation(store, projection, source, progress)
    switch_or_drop(store, projection, generation)
    return generation


@dataclass(frozen=True)
class Difference:
    table: str
    key: tuple[Any, ...]
    live: Row | None
    rebuilt: Row | None


def verify(
    store: ReadModelStore, projection: Projection, source: Source, progress: Progress | None = None
) -> list[Difference]:
    """Rows that differ between the live generation and a fresh rebuild (none = proof)."""
    live = store.install(projection)
    scratch = build_generation(store, projection, source, progress)
    try:
        return compare(store, projection, live, scratch)
    finally:
        store.drop_generation(projection.name, scratch)


def compare(store: ReadModelStore, projection: Projection, a: int, b: int) -> list[Difference]:
    differences = []
    for spec in projection.tables:
        left = {spec.key_of(r): r for r in store.dump(projection.name, a, spec)}
        right = {spec.key_of(r): r for r in store.dump(projection.name, b, spec)}
        for key in sorted(left.keys() | right.keys(), key=repr):
            if left.get(key) != right.get(key):
                differences.append(Difference(spec.name, key, left.get(key), right.get(key)))
    return differences


def retry(
    store: ReadModelStore, projection: Projection, keyring: Keyring, stored: StoredEvents
) -> Retried:
    """Re-apply every dead letter of the live generation (records from Kafka, as the
    runner stores them, checked against the event store again)."""
    return retry_letters(
        store, projection, lambda letters: _items(keyring, stored, projection, letters)
    )


def _items(
    keyring: Keyring, stored: StoredEvents, projection: Projection, letters: list[StoredLetter]
) -> list[Item]:
    from consumers.kafka_records import Record

    records = [Record(t, p, o, None, bytes(payload)) for t, p, o, _, payload in letters]
    return decode(records, keyring, stored, projection.personal_inputs, projection.search_fields)
