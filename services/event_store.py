"""The `crm` event store: one eventsourcing Application holding all three aggregates.

One application means one notification log, so every event has one global position
(`notification id`) in commit order: the relay publishes in that order. PostgreSQL
in production; a SQLite file in embedded mode; `popo` (in memory) for unit tests.
Its PostgreSQL tables are made by `services.event_store_tables`; batches are inserted
by `services.pg_batch_recorder` (same lock and ordering, one round trip).

Hot paths avoid two eventsourcing 9.5.6 costs: `save()` and the default projector
check every aggregate and event against runtime-checkable Protocols (`isinstance`
on a Protocol costs ~40 us in Python 3.11, more than decoding the event).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import AggregateRecorder, Notification, Recording, StoredEvent
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment, EnvType
from psycopg.conninfo import conninfo_to_dict

from consumers.pg_pool import RECONNECT_TIMEOUT_S
from domain import codec
from domain.base import Aggregate, DomainEvent, NotFound
from domain.codec import PLAINTEXT, CodecMapper, PersonalDataCipher
from services.event_store_tables import create_tables
from services.pg_batch_recorder import AsyncBatchWriter, BatchInsertRecorder

A = TypeVar("A", bound=Aggregate)
READ_PAGE = 1_000
"""Stored events read at a time by `stored_events`."""


class CrmApplication(Application[UUID]):
    """Stores and loads aggregates; answers auditors' questions about the past."""

    name = "crm"
    log_section_size = 1000

    def __init__(self, env: Mapping[str, str], cipher: PersonalDataCipher = PLAINTEXT) -> None:
        self.cipher = cipher
        super().__init__(env)
        self.snapshot_recorder: AggregateRecorder = self.factory.aggregate_recorder("snapshots")
        """Aggregates' states at some versions (`domain.snapshot`; a version per row, the
        tag as its topic), for `services.current_state` to start long histories from.
        Not eventsourcing's snapshotting, whose loads would decode them as events."""

    def construct_mapper(self) -> CodecMapper:
        return CodecMapper(self.cipher)

    def record(self, *aggregates: Aggregate) -> list[Recording[UUID]]:
        """Save the pending events of `aggregates` in one transaction; the recordings
        hold the events as stored, sealed.

        What `save()` does for this application (no snapshots, no `notify` hooks),
        without its per-aggregate Protocol checks.
        """
        sealed, stored = self._sealed(aggregates)
        return _recordings(sealed, stored, self.recorder.insert_events(stored))

    def saved(self, *aggregates: Aggregate) -> dict[int, Saved]:
        """`record`, answering what each aggregate's save gave (`saved_by_id`) without
        making its `Recording`s: eventsourcing's frozen dataclasses, two an event, cost
        ~14,000 instructions, more than sealing it."""
        sealed, stored = self._sealed(aggregates)
        return saved_by_id(sealed, self.recorder.insert_events(stored))

    def async_writer(self) -> AsyncBatchWriter | None:
        """An insert path to await on an event loop (PostgreSQL only), for `saved_async`."""
        if isinstance(self.recorder, BatchInsertRecorder):
            return AsyncBatchWriter(self.recorder)
        return None

    async def saved_async(
        self, writer: AsyncBatchWriter, *aggregates: Aggregate
    ) -> dict[int, Saved]:
        """`saved`, with the insert awaited through `writer` (the group committer's)."""
        sealed, stored = self._sealed(aggregates)
        return saved_by_id(sealed, await writer.insert_events(stored))

    def _sealed(
        self, aggregates: Iterable[Aggregate]
    ) -> tuple[list[DomainEvent], list[StoredEvent]]:
        """The aggregates' pending events sealed, and their stored forms."""
        mapper = cast(CodecMapper, self.mapper)
        pairs = [mapper.sealed_and_stored(e) for a in aggregates for e in a.collect_events()]
        return [sealed for sealed, _ in pairs], [stored for _, stored in pairs]

    def stored_events(self, aggregate_id: UUID, *, after: int = 0) -> Iterator[StoredEvent]:
        """The aggregate's stored events after version `after`, oldest first, read
        `READ_PAGE` at a time: memory stays flat however long its history (a customer's
        has no bound)."""
        while True:
            page = self.recorder.select_events(aggregate_id, gt=after, limit=READ_PAGE)
            yield from page
            if len(page) < READ_PAGE:
                return
            after = page[-1].originator_version

    def sealed_load(self, kind: type[A], aggregate_id: UUID, version: int | None = None) -> A:
        """`load` (at `version`), the personal fields still sealed (nothing is decrypted)."""
        aggregate: Aggregate | None = None
        for stored in self.stored_events(aggregate_id):
            if version is not None and stored.originator_version > version:
                break
            aggregate = codec.sealed_event(stored).mutate(aggregate)
        if not isinstance(aggregate, kind):
            raise NotFound(kind.aggregate_type, aggregate_id)
        return aggregate

    def load(self, kind: type[A], aggregate_id: UUID, version: int | None = None) -> A:
        try:
            aggregate: Aggregate = self.repository.get(
                aggregate_id, version=version, projector_func=_project
            )
        except AggregateNotFoundError:
            raise NotFound(kind.aggregate_type, aggregate_id) from None
        if not isinstance(aggregate, kind):
            raise NotFound(kind.aggregate_type, aggregate_id)
        return aggregate

    def caught_up(self, aggregate: A) -> A:
        """`aggregate` (every event of it stored, held sealed) with the events stored
        after its version applied as stored, in place."""
        applied(aggregate, self.stored_events(aggregate.id, after=aggregate.version))
        return aggregate

    def history(self, aggregate_id: UUID) -> list[DomainEvent]:
        """Every event of one aggregate, oldest first, with its metadata."""
        return list(self.opened_events(aggregate_id))

    def opened_events(self, aggregate_id: UUID) -> Iterator[DomainEvent]:
        """`history` a page at a time (`stored_events`), for a reader that keeps none."""
        for stored in self.stored_events(aggregate_id):
            yield cast(DomainEvent, self.mapper.to_domain_event(stored))

    def sealed_events(self, aggregate_id: UUID, *, upto: int) -> Iterator[DomainEvent]:
        """The aggregate's events up to version `upto`, oldest first, their personal
        fields still sealed, read a page at a time (`stored_events`)."""
        for stored in self.stored_events(aggregate_id):
            if stored.originator_version > upto:
                return
            yield codec.sealed_event(stored)

    def sealed_history(
        self, aggregate_id: UUID, *, after: int = 0, limit: int | None = None
    ) -> list[DomainEvent]:
        """`history` with the personal fields still sealed (`codec.unseal` opens them):
        the events after version `after`, at most `limit` of them."""
        stored = self.recorder.select_events(aggregate_id, gt=after, limit=limit)
        return [codec.sealed_event(s) for s in stored]

    def as_of(self, kind: type[A], aggregate_id: UUID, instant: datetime) -> A:
        """The aggregate as it was at `instant`: its events up to the first that occurred
        after it, read a page at a time, each opened only once it is applied."""
        aggregate: Aggregate | None = None
        for stored in self.stored_events(aggregate_id):
            event = codec.sealed_event(stored)
            if event.occurred_at > instant:
                break
            aggregate = codec.unseal(event, self.cipher).mutate(aggregate)
        if not isinstance(aggregate, kind):
            raise NotFound(kind.aggregate_type, aggregate_id)
        return aggregate

    def head_position(self) -> int:
        """The global position of the newest stored event (0 when empty)."""
        return self.recorder.max_notification_id() or 0


def _project(aggregate: Aggregate | None, events: Iterable[DomainEvent]) -> Aggregate | None:
    """Replay `events` onto `aggregate` (eventsourcing's projector, minus its Protocol check)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


_EVENTSOURCING_PARAMS = ("dbname", "host", "port", "user", "password")
"""The connection parameters eventsourcing's settings take (`POSTGRES_DBNAME`...)."""


class UrlPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory whose pool connects with every parameter of
    the database URL (`POSTGRES_URL`: `sslmode`, `sslrootcert`, a socket directory in
    `?host=`...), as every other connection of the process does, not only the five its
    settings take."""

    POSTGRES_URL = "POSTGRES_URL"

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        url = self.env.get(self.POSTGRES_URL)
        if url:  # before the recorders open the pool
            self.datastore.pool.kwargs.update(conninfo_to_dict(url))  # type: ignore[union-attr]


def store_env(database_url: str | None, data_dir: Path | None) -> dict[str, str]:
    """eventsourcing settings for PostgreSQL (`database_url`) or a SQLite file in `data_dir`."""
    if database_url is None:
        if data_dir is None:
            return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        return {
            "PERSISTENCE_MODULE": "services.sqlite_events:SecureDeleteFactory",
            "SQLITE_DBNAME": str(data_dir / "events.db"),
            "SQLITE_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": "services.sqlite_recorder:ChainedSQLiteRecorder",
        }
    params = conninfo_to_dict(database_url)  # what is missing: libpq's default ("")
    return {
        "PERSISTENCE_MODULE": "services.event_store:UrlPostgresFactory",
        UrlPostgresFactory.POSTGRES_URL: database_url,
        **{
            f"POSTGRES_{name.upper()}": str(params.get(name) or "")
            for name in _EVENTSOURCING_PARAMS
        },
        "POSTGRES_POOL_SIZE": "8",
        "POSTGRES_MAX_OVERFLOW": "8",
        "POSTGRES_LOCK_TIMEOUT": "10",
        # The wait for a pooled connection, tried 10 times by the recorder: while the
        # server is down a command fails (503) after ~12 s rather than ~50 s.
        "POSTGRES_CONNECT_TIMEOUT": "1",
        "POSTGRES_PRE_PING": "y",  # replace connections a server restart closed
        "CREATE_TABLE": "n",
        "APPLICATION_RECORDER_TOPIC": "services.pg_batch_recorder:BatchInsertRecorder",
    }


def open_event_store(
    database_url: str | None,
    data_dir: Path | None,
    cipher: PersonalDataCipher = PLAINTEXT,
) -> CrmApplication:
    """The `crm` application on the configured backend, its tables created if missing."""
    app = CrmApplication(store_env(database_url, data_dir), cipher)
    if database_url is not None:
        # eventsourcing builds its pool with psycopg_pool's 5-minute reconnect_timeout
        # and no setting for it (see consumers.pg_pool.RECONNECT_TIMEOUT_S).
        app.recorder.datastore.pool.reconnect_timeout = RECONNECT_TIMEOUT_S  # type: ignore[attr-defined]
        create_tables(database_url, app.recorder, app.snapshot_recorder)
    return app


def applied(aggregate: Aggregate | None, stored: Iterable[StoredEvent]) -> Aggregate | None:
    """`stored` events decoded as stored (sealed) and applied to `aggregate`: in place,
    or to a new one when it is None."""
    for event in stored:
        aggregate = codec.sealed_event(event).mutate(aggregate)
    return aggregate


class Saved(NamedTuple):
    """What saving an aggregate's pending events gave."""

    version: int  # the aggregate's new version
    position: int  # the global position of its last event
    events: list[DomainEvent]  # the events as stored: sealed


def saved_by_id(sealed: Sequence[DomainEvent], ids: Sequence[int] | None) -> dict[int, Saved]:
    """What each aggregate's events, stored as `sealed` at notification `ids`, gave, by
    its id's `UUID.int` (a `UUID` key hashes in Python: 4 calls a command more)."""
    events: dict[int, list[DomainEvent]] = {}
    last: dict[int, int] = {}
    for event, position in zip(sealed, ids or (), strict=True):
        key = event.originator_id.int
        events.setdefault(key, []).append(event)
        last[key] = position
    return {
        key: Saved(events[key][-1].originator_version, position, events[key])
        for key, position in last.items()
    }


def _recordings(
    sealed: Sequence[DomainEvent], stored: Sequence[StoredEvent], ids: Sequence[int] | None
) -> list[Recording[UUID]]:
    """The recordings of events inserted as `stored` at notification `ids`."""
    return [
        Recording(event, Notification(s.originator_id, s.originator_version, s.topic, s.state, i))
        for event, s, i in zip(sealed, stored, ids or (), strict=True)
    ]
