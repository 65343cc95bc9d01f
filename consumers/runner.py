"""The projection runner: Kafka topics -> one projection's read model, exactly once.

One generic loop for every projection (`crm consume NAME`): poll a batch, decode the
CloudEvents, open with the keyring the personal fields the projection reads, and hand
the batch to a writer (`consumers.projection_writer`; by default a child process, so
reading the next batch and writing this one use two cores), which writes rows, offsets
and applied versions in one transaction. Offsets live only in the read-model
database: on assignment the consumer seeks to them (the `on_assigned` callback),
Kafka's own group offsets are never committed; records read again after a seek are
dropped by the writer's transaction, which locks the stored offsets. A database error
rolls back; the same batch is retried with backoff until it commits, so nothing is
lost or applied twice. When a rebuild switches the live generation, the runner
notices (between batches, or when a batch fails on the dropped generation) and
restarts on the new one.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import structlog

from consumers import envelope
from consumers.blind_index import needs_terms, search_terms
from consumers.kafka_io import Consumed, TopicConsumer
from consumers.keyring import Keyring
from consumers.projecting import Item
from consumers.projection_writer import (
    BatchWriter,
    Handed,
    InlineWriter,
    ProcessWriter,
    Written,
    items_of,
)
from consumers.readmodel_store import PositionKey, ReadModelStore
from domain import codec
from domain.base import DomainEvent
from domain.customer import CustomerErased
from projections.base import Projection

log = structlog.get_logger("crm.projections")


def group_id(name: str) -> str:
    return f"crm.projection.{name}"


def hand_over(
    records: Sequence[Consumed],
    keyring: Keyring,
    fields: frozenset[str],
    search: frozenset[str] = frozenset(),
) -> list[Handed]:
    """Records as a writer takes them; an undecodable one keeps its error (a dead letter).

    Only the personal `fields` (the projection's `personal_inputs`, none since read
    models store sealed values) are opened, and the customer fields in `search` (its
    `search_fields`) only to derive their search terms (`consumers.blind_index`): the
    event handed over stays sealed. The batch's data keys are fetched in one query
    (`Keyring.preload`). An event with nothing to open, in the current schema, is passed
    on as the bytes it arrived in: the writer decodes it anyway, so reading it here too
    would be wasted (now that is nearly every event).
    """
    decoding = fields | search
    read = [_read(record, decoding) for record in records]
    if fields or search:
        keyring.preload(
            r.event.data_subject
            for r in read
            if r.event is not None
            and (_fields_to_open(type(r.event), fields) or needs_terms(r.event, search))
        )
    return [_hand(r, keyring, fields, search) for r in read]


def decode(
    records: Sequence[Consumed],
    keyring: Keyring,
    fields: frozenset[str],
    search: frozenset[str] = frozenset(),
) -> list[Item]:
    """Records as items, events decoded and opened as a writer sees them."""
    return items_of(hand_over(records, keyring, fields, search))


class _Read(NamedTuple):
    record: Consumed
    position: int
    data: bytes | None
    """The event's codec JSON, to pass on as it is."""
    event: DomainEvent | None = None
    """The decoded event, when fields must be opened (or a data key forgotten)."""
    error: str | None = None


def _read(record: Consumed, fields: frozenset[str]) -> _Read:
    try:
        attributes = envelope.delivered(record.value)
        cls = codec.event_class(attributes.type)
        if attributes.schemaversion == cls.class_version and not _to_open(cls, fields):
            return _Read(record, attributes.position, bytes(attributes.data))
        return _Read(record, attributes.position, None, envelope.event_of(attributes))
    except Exception as error:  # any undecodable record is a dead letter, by design
        return _Read(record, 0, None, None, f"{type(error).__name__}: {error}")


def _hand(read: _Read, keyring: Keyring, fields: frozenset[str], search: frozenset[str]) -> Handed:
    r, event = read.record, read.event
    if event is None:
        return Handed(r.topic, r.partition, r.offset, read.position, r.value, read.data, read.error)
    if isinstance(event, CustomerErased):
        keyring.forget(event.originator_id)
    try:
        opened = codec.unseal(event, keyring, _fields_to_open(type(event), fields))
        terms = search_terms(event, keyring, search)
    except Exception as error:  # a field that does not open is a dead letter, by design
        return Handed(
            r.topic, r.partition, r.offset, 0, r.value, None, f"{type(error).__name__}: {error}"
        )
    encoded = codec.encode(opened)
    return Handed(r.topic, r.partition, r.offset, read.position, r.value, encoded, None, terms)


@functools.cache
def _to_open(cls: type[DomainEvent], fields: frozenset[str]) -> bool:
    """Whether the reader must decode `cls`: to open fields, or to forget an erased key."""
    return bool(_fields_to_open(cls, fields)) or cls is CustomerErased


@functools.cache  # a few dozen (event class, projection) pairs
def _fields_to_open(cls: type[DomainEvent], fields: frozenset[str]) -> tuple[str, ...]:
    """The personal fields of `cls` among `fields` (those the projection reads)."""
    return tuple(name for name in cls.personal_fields if name in fields)


@dataclass(frozen=True)
class Polled:
    """One poll: its records handed over, the lag behind it, and whether nothing is left."""

    handed: list[Handed]
    lag: int | None
    caught_up: bool = False


@dataclass
class ProjectionRunner:
    """Runs one projection generation from Kafka. `generation=None` follows the live one."""

    store: ReadModelStore
    projection_name: str
    keyring: Keyring
    bootstrap: str
    topics: list[str]
    generation: int | None = None
    group: str | None = None
    max_poll_records: int = 5000
    on_batch: Callable[[Written], None] | None = None
    writer_process: bool = True
    """Write in a child process beside this reading one (`consumers.projection_writer`)."""
    stop_event: threading.Event = field(default_factory=threading.Event)
    _next: dict[PositionKey, int] = field(default_factory=dict)

    def run(self, *, until_caught_up: bool = False) -> None:
        """Consume until `stop()` (or, with `until_caught_up`, until no lag remains)."""
        from projections import PROJECTIONS

        projection = PROJECTIONS[self.projection_name]
        while not self.stop_event.is_set():
            generation = self.generation or self.store.install(projection)
            if self._consume(projection, generation, until_caught_up=until_caught_up):
                return

    def stop(self) -> None:
        self.stop_event.set()

    def _consume(self, projection: Projection, generation: int, *, until_caught_up: bool) -> bool:
        """Consume one generation; True when done, False when the live generation moved."""
        writer = self._open_writer(projection, generation)  # starts while the group is joined
        try:
            consumer = self._open_consumer(projection, generation)
            try:
                return self._feed(consumer, writer, projection, generation, until_caught_up)
            finally:
                consumer.close()
        finally:
            self._abandoned(writer.close())

    def _feed(
        self,
        consumer: TopicConsumer,
        writer: BatchWriter,
        projection: Projection,
        generation: int,
        until_caught_up: bool,
    ) -> bool:
        """Read and hand over batches; the writer's results arrive in order, maybe later."""
        checked = time.monotonic()
        while not self.stop_event.is_set():
            polled = self._fetch(consumer, projection)
            if polled.handed:
                if self._abandoned(writer.submit(polled.handed, polled.lag)):
                    return False
            elif polled.caught_up and until_caught_up:
                return not self._abandoned(writer.drain())
            if self.generation is None and time.monotonic() - checked > 2:
                checked = time.monotonic()
                if self.store.live_generation(self.projection_name) != generation:
                    return False
        return True

    def _open_writer(self, projection: Projection, generation: int) -> BatchWriter:
        writer = ProcessWriter if self.writer_process else InlineWriter
        live = self.generation is None
        return writer(self.store, projection, generation, follow_live=live, stop=self.stop_event)

    def _open_consumer(self, projection: Projection, generation: int) -> TopicConsumer:
        return TopicConsumer(
            self.bootstrap,
            self.group or group_id(self.projection_name),
            self.topics,
            on_assigned=lambda keys: self._stored_offsets(projection, generation, keys),
            max_poll_records=self.max_poll_records,
        )

    def _fetch(self, consumer: TopicConsumer, projection: Projection) -> Polled:
        """One poll, decoded, with the lag behind it."""
        records = consumer.poll(timeout_ms=500)
        lag = self._lag(consumer, records)
        if records:
            fields, search = projection.personal_inputs, projection.search_fields
            return Polled(hand_over(records, self.keyring, fields, search), lag)
        return Polled([], lag, caught_up=lag == 0 and bool(consumer.kafka.assignment()))

    def _stored_offsets(
        self, projection: Projection, generation: int, keys: list[PositionKey]
    ) -> dict[PositionKey, int]:
        with self.store.session(projection, generation) as session:
            stored = session.positions()
        offsets = {key: stored.get(key, 0) for key in keys}
        self._next.update(offsets)
        return offsets

    def _lag(self, consumer: TopicConsumer, records: Sequence[Consumed]) -> int | None:
        """Records between what this batch reaches and the end of the assigned partitions."""
        for record in records:
            self._next[(record.topic, record.partition)] = record.offset + 1
        ends = consumer.end_offsets()
        if not ends:
            return None
        return sum(max(0, end - self._next.get(key, 0)) for key, end in ends.items())

    def _abandoned(self, results: list[Written]) -> bool:
        """Log the batches' results (one line per batch); True if one was abandoned."""
        abandoned = False
        for written in results:
            abandoned = self._report(written) or abandoned
        return abandoned

    def _report(self, written: Written) -> bool:
        if written.abandoned:
            log.info("batch_abandoned", projection=self.projection_name, events=written.events)
            return True
        log.info(
            "batch", projection=self.projection_name, events=written.events,
            applied=written.applied, skipped=written.skipped, dead=written.dead,
            ms=round(written.seconds * 1000, 1), lag=written.lag,
        )  # fmt: skip
        if self.on_batch is not None:
            self.on_batch(written)
        return False
