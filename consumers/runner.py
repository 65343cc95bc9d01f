"""The projection runner: Kafka topics -> one projection's read model, exactly once.

One generic loop for every projection (`crm consume NAME`): poll a batch, decode the
CloudEvents, refuse what the event store does not hold at their positions (rejected
records: `consumers.as_stored`, `consumers.projecting`), open with the keyring the
personal fields the projection reads, and hand the batch to a writer
(`consumers.projection_writer`; by default a child process, so reading the next batch
and writing this one use two cores), which writes rows, offsets and applied versions in
one transaction. Offsets live only in the read-model database: on assignment the
consumer seeks to them (the `on_assigned` callback), Kafka's own group offsets are never
committed; records read again after a seek are dropped by the writer's transaction,
which locks the stored offsets. A database error rolls back; the same batch is retried
with backoff until it commits, so nothing is lost or applied twice. When a rebuild
switches the live generation, the runner notices (between batches, or when a batch fails
on the dropped generation) and restarts on the new one.

It keeps running through faults, without a supervisor: a broker outage (polls come
back empty, end offsets time out) and a database outage (the writer retries the batch,
the runner's own reads fail) are reported once each way (`consumers.outage`) and
waited out; a writer process that dies is replaced; a rebalance whose offsets could not
be read, and a consumer the watchdog finds stuck (`consumers.watchdog`), get a new
Kafka consumer. Every restart resumes from the stored offsets: nothing is lost or
applied twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog

from consumers.as_stored import StoredEvents
from consumers.batch_retries import log_retry
from consumers.hand_over import hand_over
from consumers.kafka_io import TopicConsumer
from consumers.kafka_records import BrokerUnavailable, Consumed
from consumers.keyring import Keyring
from consumers.outage import KAFKA, POSTGRES, Dependencies
from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.projection_writer import BatchWriter, InlineWriter, ProcessWriter, WriterDied
from consumers.readmodel_store import PositionKey, ReadModelStore
from consumers.watchdog import Watchdog
from consumers.writer_messages import Handed, Retrying, Written
from projections.base import Projection

log = structlog.get_logger("crm.projections")

CHECK_EVERY_S = 2.0
"""How often the runner looks at the live generation and asks its watchdog."""
Restart = Literal["watchdog_restarts", "writer_restarts"]


def group_id(name: str, topic_prefix: str) -> str:
    """The projection's consumer group, under its topics' prefix (`CRM_TOPIC_PREFIX`):
    groups are broker-wide, so without it the `crm consume NAME` of every prefix on one
    broker joined one group, and each start or stop of one rebalanced the others."""
    return f"{topic_prefix}crm.projection.{name}"


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
    stored: StoredEvents
    """The event store the records are checked against (`consumers.as_stored`)."""
    bootstrap: str
    topics: list[str]
    group: str
    """Its Kafka consumer group: `group_id` live, with `.vN` for a rebuild's generation."""
    generation: int | None = None
    max_poll_records: int = 5000
    on_batch: Callable[[Written], None] | None = None
    writer_process: bool = True
    """Write in a child process beside this reading one (`consumers.projection_writer`)."""
    watchdog_seconds: float = 60.0
    """Rebuild the Kafka consumer after this long without progress while records wait."""
    dependencies: Dependencies | None = None
    """Outage reporting; by default it only logs."""
    on_restart: Callable[[Restart], None] | None = None
    """Told each time the watchdog or a dead writer made the runner start again."""
    log_setup: Callable[[], None] | None = None
    """Configures logging in the writer process as in this one (picklable)."""
    stop_event: threading.Event = field(default_factory=threading.Event)
    _next: dict[PositionKey, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.deps = self.dependencies or Dependencies(f"consume {self.projection_name}")

    def run(self, *, until_caught_up: bool = False) -> None:
        """Consume until `stop()` (or, with `until_caught_up`, until no lag remains)."""
        from projections import PROJECTIONS

        projection = PROJECTIONS[self.projection_name]
        while not self.stop_event.is_set():
            generation = self._generation(projection)
            if generation is not None and self._consume(projection, generation, until_caught_up):
                return

    def stop(self) -> None:
        self.stop_event.set()

    def _generation(self, projection: Projection) -> int | None:
        """The generation to write (the live one, created if none); None while the
        database is away."""
        if self.generation is not None:
            return self.generation
        try:
            live = self.store.install(projection)
        except self.store.transient_errors as error:
            self.stop_event.wait(self.deps.lost(POSTGRES, error))
            return None
        self.deps.back(POSTGRES)
        return live

    def _consume(self, projection: Projection, generation: int, until_caught_up: bool) -> bool:
        """Consume one generation; True when done, False to start again (the live
        generation moved, or a new Kafka consumer or writer process is needed)."""
        writer = self._open_writer(projection, generation)  # starts while the group is joined
        try:
            with self._open_consumer(projection, generation) as consumer:
                return self._feed(consumer, writer, projection, generation, until_caught_up)
        except BrokerUnavailable as error:  # no consumer without a broker
            self.stop_event.wait(self.deps.lost(KAFKA, error))
        except self.store.transient_errors as error:  # a rebalance could not read offsets
            self.stop_event.wait(self.deps.lost(POSTGRES, error))
        except WriterDied as error:
            log.warning("writer_restart", projection=self.projection_name, error=str(error))
            self._restarted("writer_restarts")
        finally:
            self._abandoned(writer.close())
        return False

    def _feed(
        self,
        consumer: TopicConsumer,
        writer: BatchWriter,
        projection: Projection,
        generation: int,
        until_caught_up: bool,
    ) -> bool:
        """Read and hand over batches; the writer's results arrive in order, maybe later."""
        watchdog = Watchdog(self.watchdog_seconds)
        checked = time.monotonic()
        while not self.stop_event.is_set():
            polled = self._fetch(consumer, projection)
            if polled.handed:
                watchdog.progressed()
                if self._abandoned(writer.submit(polled.handed, polled.lag)):
                    return False
            elif polled.caught_up and until_caught_up:
                return not self._abandoned(writer.drain())
            if time.monotonic() - checked > CHECK_EVERY_S:
                checked = time.monotonic()
                if not self._checkup(consumer, generation, watchdog):
                    return False
        return True

    def _checkup(self, consumer: TopicConsumer, generation: int, watchdog: Watchdog) -> bool:
        """False when this consumer must start again: the live generation moved, or the
        watchdog finds it stuck. Unanswered questions (an outage) change nothing."""
        try:
            if self.generation is None and self._live() != generation:
                return False
            stored = self.store.status(self.projection_name, generation).positions
            ends = consumer.end_offsets(every_partition=True)
        except BrokerUnavailable:
            return True  # already reported by the poll loop's end offsets
        except DATABASE_UNAVAILABLE as error:
            self.deps.lost(POSTGRES, error)
            return True
        except self.store.transient_errors:
            return False  # e.g. the generation was dropped since: look at the live one again
        self.deps.back(POSTGRES)
        if not watchdog.stuck(ends, stored):
            return True
        log.warning(
            "watchdog_restart", projection=self.projection_name, idle_s=watchdog.seconds,
            behind=sum(max(0, end - stored.get(key, 0)) for key, end in ends.items()),
        )  # fmt: skip
        self._restarted("watchdog_restarts")
        return False

    def _live(self) -> int | None:
        return self.store.live_generation(self.projection_name)

    def _open_writer(self, projection: Projection, generation: int) -> BatchWriter:
        live, stop, on_retry = self.generation is None, self.stop_event, self._on_retry
        if self.writer_process:
            return ProcessWriter(
                self.store, projection, generation, follow_live=live, stop=stop,
                on_retry=on_retry, log_setup=self.log_setup,
            )  # fmt: skip
        return InlineWriter(
            self.store, projection, generation, follow_live=live, stop=stop, on_retry=on_retry
        )

    def _open_consumer(self, projection: Projection, generation: int) -> TopicConsumer:
        return TopicConsumer(
            self.bootstrap,
            self.group,
            self.topics,
            on_assigned=lambda keys: self._stored_offsets(projection, generation, keys),
            max_poll_records=self.max_poll_records,
        )

    def _fetch(self, consumer: TopicConsumer, projection: Projection) -> Polled:
        """One poll, decoded, with the lag behind it (None while the broker is away)."""
        try:
            records = consumer.poll(timeout_ms=500)
        except BrokerUnavailable as error:
            self.stop_event.wait(self.deps.lost(KAFKA, error))
            return Polled([], None)
        lag = self._lag(consumer, records)
        if records:
            return Polled(self._hand_over(records, projection), lag)
        return Polled([], lag, caught_up=lag == 0 and bool(consumer.kafka.assignment()))

    def _hand_over(self, records: Sequence[Consumed], projection: Projection) -> list[Handed]:
        """`hand_over`, waiting out an event store or key store that cannot be reached
        (the records stay in hand; if the runner stops meanwhile, they are read again on
        the next start)."""
        fields, search = projection.personal_inputs, projection.search_fields
        while not self.stop_event.is_set():
            try:
                return hand_over(records, self.keyring, self.stored, fields, search)
            except DATABASE_UNAVAILABLE as error:
                self.stop_event.wait(self.deps.lost(POSTGRES, error))
        return []

    def _stored_offsets(
        self, projection: Projection, generation: int, keys: list[PositionKey]
    ) -> dict[PositionKey, int]:
        with self.store.session(projection, generation) as session:
            stored = session.positions()
        offsets = {key: stored.get(key, 0) for key in keys}
        self._next.update(offsets)
        log.info("partitions_assigned", projection=self.projection_name, partitions=len(keys))
        return offsets

    def _lag(self, consumer: TopicConsumer, records: Sequence[Consumed]) -> int | None:
        """Records between what this batch reaches and the end of the assigned partitions."""
        for record in records:
            self._next[(record.topic, record.partition)] = record.offset + 1
        try:
            ends = consumer.end_offsets()
        except BrokerUnavailable as error:
            self.deps.lost(KAFKA, error)
            return None
        if records or ends:  # the broker answered
            self.deps.back(KAFKA)
        if not ends:
            return None
        return sum(max(0, end - self._next.get(key, 0)) for key, end in ends.items())

    def _on_retry(self, notice: Retrying) -> None:
        """A batch failed to commit and is tried again: an outage, or worth a line."""
        if notice.unavailable:
            self.deps.lost(POSTGRES, notice.error, at=notice.at)
        else:
            log_retry(self.projection_name, notice)

    def _restarted(self, why: Restart) -> None:
        if self.on_restart is not None:
            self.on_restart(why)

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
        self.deps.back(POSTGRES)
        log.info(
            "batch", projection=self.projection_name, events=written.events,
            applied=written.applied, skipped=written.skipped, dead=written.dead,
            rejected=written.rejected, ms=round(written.seconds * 1000, 1), lag=written.lag,
        )  # fmt: skip
        if self.on_batch is not None:
            self.on_batch(written)
        return False
