"""The projection runner: Kafka topics -> one projection's read model, exactly once.

One generic loop for every projection (`crm consume NAME`): poll a batch, decode the
CloudEvents, open with the keyring the personal fields the projection reads, and hand
the batch to `consumers.projecting.project`, which writes rows, offsets and applied
versions in one transaction. Offsets live only in the read-model database: on
assignment the consumer seeks to them (the `on_assigned` callback), Kafka's own group
offsets are never committed. A database error rolls back; the same batch is retried
with backoff until it commits, so nothing is lost or applied twice. When a rebuild
switches the live generation, the runner notices and restarts on the new one.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from consumers import envelope
from consumers.kafka_io import Record, TopicConsumer
from consumers.keyring import Keyring
from consumers.projecting import Item, Outcome, project
from consumers.readmodel_store import PositionKey, ReadModelStore
from domain import codec
from domain.base import DomainEvent
from domain.customer import CustomerErased
from projections.base import Projection

log = structlog.get_logger("crm.projections")


def group_id(name: str) -> str:
    return f"crm.projection.{name}"


def decode(records: list[Record], keyring: Keyring, fields: frozenset[str]) -> list[Item]:
    """Records as items; undecodable ones keep their error (they become dead letters).

    Only the personal `fields` (the projection's `personal_inputs`) are opened; the
    others stay sealed, so a projection that stores none (stats) or a few (marketing)
    never pays for the rest. The batch's data keys are fetched in one query
    (`Keyring.preload`) before any field is opened.
    """
    opened = [_open(record) for record in records]
    if not fields:
        return opened
    keyring.preload(
        i.event.data_subject
        for i in opened
        if i.event is not None and _fields_to_open(type(i.event), fields)
    )
    return [_unseal(item, keyring, fields) for item in opened]


def _open(record: Record) -> Item:
    try:
        sealed, position = envelope.from_cloudevent(record.value)
    except Exception as error:  # any undecodable record is a dead letter, by design
        return _item(record, 0, None, f"{type(error).__name__}: {error}")
    return _item(record, position, sealed, None)


def _item(record: Record, position: int, event: DomainEvent | None, error: str | None) -> Item:
    return Item(record.topic, record.partition, record.offset, position, record.value, event, error)


def _unseal(item: Item, keyring: Keyring, fields: frozenset[str]) -> Item:
    sealed = item.event
    if sealed is None:
        return item
    if isinstance(sealed, CustomerErased):
        keyring.forget(sealed.originator_id)
    names = _fields_to_open(type(sealed), fields)
    if not names:
        return item
    try:
        opened = codec.unseal(sealed, keyring, names)
        return Item(item.topic, item.partition, item.offset, item.position, item.value, opened)
    except Exception as error:  # a field that does not open is a dead letter, by design
        return item._replace(position=0, event=None, error=f"{type(error).__name__}: {error}")


@functools.cache  # a few dozen (event class, projection) pairs
def _fields_to_open(cls: type[DomainEvent], fields: frozenset[str]) -> tuple[str, ...]:
    """The personal fields of `cls` among `fields` (those the projection reads)."""
    return tuple(name for name in cls.personal_fields if name in fields)


@dataclass(frozen=True)
class Polled:
    """One poll: its decoded items, the lag behind it, and whether nothing is left."""

    items: list[Item]
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
    on_batch: Callable[[Outcome, int], None] | None = None
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
        consumer = self._open_consumer(projection, generation)
        checked = time.monotonic()
        try:
            while not self.stop_event.is_set():
                polled = self._fetch(consumer, projection.personal_inputs)
                if polled.items:
                    self._commit(projection, generation, polled.items, polled.lag)
                elif polled.caught_up and until_caught_up:
                    return True
                if self.generation is None and time.monotonic() - checked > 2:
                    checked = time.monotonic()
                    if self.store.live_generation(self.projection_name) != generation:
                        return False
            return True
        finally:
            consumer.close()

    def _open_consumer(self, projection: Projection, generation: int) -> TopicConsumer:
        return TopicConsumer(
            self.bootstrap,
            self.group or group_id(self.projection_name),
            self.topics,
            on_assigned=lambda keys: self._stored_offsets(projection, generation, keys),
            max_poll_records=self.max_poll_records,
        )

    def _fetch(self, consumer: TopicConsumer, fields: frozenset[str]) -> Polled:
        """One poll, decoded, with the lag behind it."""
        records = consumer.poll(timeout_ms=500)
        lag = self._lag(consumer, records)
        if records:
            return Polled(decode(records, self.keyring, fields), lag)
        return Polled([], lag, caught_up=lag == 0 and bool(consumer.kafka.assignment()))

    def _stored_offsets(
        self, projection: Projection, generation: int, keys: list[PositionKey]
    ) -> dict[PositionKey, int]:
        with self.store.session(projection, generation) as session:
            stored = session.positions()
        offsets = {key: stored.get(key, 0) for key in keys}
        self._next.update(offsets)
        return offsets

    def _lag(self, consumer: TopicConsumer, records: list[Record]) -> int | None:
        """Records between what this batch reaches and the end of the assigned partitions."""
        for record in records:
            self._next[(record.topic, record.partition)] = record.offset + 1
        ends = consumer.end_offsets()
        if not ends:
            return None
        return sum(max(0, end - self._next.get(key, 0)) for key, end in ends.items())

    def _commit(
        self, projection: Projection, generation: int, items: list[Item], lag: int | None
    ) -> None:
        delay = 0.1
        while True:
            try:
                started = time.perf_counter()
                with self.store.session(projection, generation) as session:
                    outcome = project(session, projection, items, lag)
            except self.store.transient_errors as error:
                log.warning(
                    "batch_retry", projection=self.projection_name, error=str(error), delay=delay
                )
                if self.stop_event.wait(delay):
                    raise
                delay = min(delay * 2, 5.0)
                continue
            self._report(outcome, len(items), time.perf_counter() - started, lag)
            return

    def _report(self, outcome: Outcome, count: int, seconds: float, lag: int | None) -> None:
        log.info(
            "batch", projection=self.projection_name, events=count, applied=outcome.applied,
            skipped=outcome.skipped, dead=outcome.dead, ms=round(seconds * 1000, 1), lag=lag,
        )  # fmt: skip
        if self.on_batch is not None:
            self.on_batch(outcome, count)
