"""The API's reads, run on its event loop: which source answers them on each store.

* PostgreSQL: `services.pg_reads` awaits every query on the loop. Read-model queries
  (`services.api.read_models.ReadModels` over `consumers.readmodel_queries`) are plain
  synchronous functions calling `store.fetch`; `AwaitedReadModels` runs them unchanged
  against a stand-in store that answers each `fetch` from rows already awaited, and
  otherwise stops the function (`_Needed`) so the driver can await that query and run
  it again. A query function costs a few microseconds of Python; a department page or
  a statistic makes one or two queries, so it runs two or three times for one round
  trip each, and no query function had to be written twice.
* SQLite (embedded): local queries answer in tens of microseconds, faster than a hop to a
  worker thread, so they run on the loop itself, on connections of their own (the
  follower's writes never hold them up: WAL readers do not wait for a writer).
I/O: through the stores it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder

from consumers.keyring import KeyStore
from consumers.readmodel_store import ReadModelStore
from projections.base import ColumnType
from services.api.read_models import ReadModels
from services.bootstrap import Runtime
from services.current_state import CurrentState, log_unstored
from services.event_store import CrmApplication
from services.pg_reads import PostgresReads

T = TypeVar("T")
Row = dict[str, Any]


class LoopReadModels(Protocol):
    async def run(self, query: Callable[[ReadModels], T]) -> T:
        """`query` (e.g. `lambda models: models.customers(...)`) without blocking the loop."""
        ...

    async def aclose(self) -> None: ...


class DirectReadModels:
    """Read models whose queries are fast enough to run on the loop (SQLite)."""

    def __init__(self, models: ReadModels) -> None:
        self._models = models

    async def run(self, query: Callable[[ReadModels], T]) -> T:
        return query(self._models)

    async def aclose(self) -> None:
        self._models.store.close()


class AwaitedReadModels:
    """Read models whose queries are awaited (PostgreSQL through `PostgresReads`)."""

    def __init__(self, reads: PostgresReads, models: ReadModels) -> None:
        self._reads = reads
        self._models = models

    async def run(self, query: Callable[[ReadModels], T]) -> T:
        answers: list[list[Row]] = []
        served: list[bool] = []
        while True:
            replay = _Replay(answers, served)
            try:
                return query(ReadModels(replay, self._models.clock))  # type: ignore[arg-type]
            except _Needed as needed:
                answers.append(await self._reads.fetch(*needed.request))
                served.append(False)

    async def aclose(self) -> None:
        """Nothing of its own: the `PostgresReads` it awaits is closed by its owner."""


class _Needed(Exception):  # noqa: N818 - a signal to the driver, never escapes `run`
    def __init__(self, request: tuple[Any, ...]) -> None:
        super().__init__("a read-model query to await")
        self.request = request


class _Replay:
    """The `fetch` of a `ReadModelStore`, answered from rows awaited before, in order.
    Rows served once are copied when served again: query functions may change them."""

    dialect = "postgresql"  # the store whose rows it was given (`AwaitedReadModels`)

    def __init__(self, answers: list[list[Row]], served: list[bool]) -> None:
        self._answers, self._served, self._next = answers, served, 0

    def fetch(
        self,
        query: str,
        tables: dict[str, str],
        params: dict[str, Any],
        types: Mapping[str, ColumnType] | None = None,
    ) -> list[Row]:
        index = self._next
        if index == len(self._answers):
            raise _Needed((query, tables, params, types))
        self._next += 1
        rows = self._answers[index]
        if self._served[index]:
            return [dict(row) for row in rows]
        self._served[index] = True
        return rows


class StoreEvents:
    """`services.current_state.EventSource` over a local event store (SQLite or memory)
    and key store, queried on the loop."""

    def __init__(
        self, recorder: ApplicationRecorder, snapshots: AggregateRecorder, keys: KeyStore
    ) -> None:
        self._recorder = recorder
        self._snapshots = snapshots
        self._keys = keys

    async def head(self) -> int:
        return self._recorder.max_notification_id() or 0

    async def events_after(
        self, aggregate_id: UUID, version: int, limit: int
    ) -> Sequence[StoredEvent]:
        return self._recorder.select_events(aggregate_id, gt=version, limit=limit)

    async def events_after_each(
        self, wanted: Sequence[tuple[UUID, int]], limit: int
    ) -> list[Sequence[StoredEvent]]:
        return [self._recorder.select_events(i, gt=version, limit=limit) for i, version in wanted]

    async def from_snapshot(
        self, aggregate_id: UUID, limit: int
    ) -> tuple[StoredEvent | None, Sequence[StoredEvent]]:
        newest = self._snapshots.select_events(aggregate_id, desc=True, limit=1)
        found = newest[0] if newest else None
        after = 0 if found is None else found.originator_version
        return found, self._recorder.select_events(aggregate_id, gt=after, limit=limit)

    async def put_snapshot(self, snapshot: StoredEvent) -> None:
        """On a worker thread: a write may wait for the writer's lock on the file."""
        await asyncio.to_thread(self._put_snapshot, snapshot)

    def _put_snapshot(self, snapshot: StoredEvent) -> None:
        """Store `snapshot`, then remove the aggregate's older ones from the SQLite file
        (a conversation's state may weigh megabytes; in memory, for tests, all stay). A
        failure (a full disk, say) is logged, not raised."""
        try:
            with contextlib.suppress(IntegrityError):  # another read stored that version
                self._snapshots.insert_events([snapshot])
            if isinstance(self._snapshots, SQLiteAggregateRecorder):
                self._remove_older(self._snapshots, snapshot)
        except PersistenceError as error:
            log_unstored(snapshot, error)

    @staticmethod
    def _remove_older(recorder: SQLiteAggregateRecorder, snapshot: StoredEvent) -> None:
        table = recorder.events_table_name
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE originator_id = ? AND originator_version < ?",
                (UUID(str(snapshot.originator_id)).hex, snapshot.originator_version),
            )

    async def keys(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        found = self._keys.load_many(subjects)
        return {s: k for s, k in found.items() if k is not None or self._keys.destroyed(s)}

    async def create_key(self, subject: UUID, key: bytes) -> bytes | None:
        return self._keys.create(subject, key)


def current_state_of(runtime: Runtime) -> tuple[CurrentState, PostgresReads | None]:
    """Reads of current state for the API over `runtime`'s event store, and on
    PostgreSQL the async reader that also serves its read models."""
    source = event_source(runtime.app, runtime.keyring.store, runtime.settings.database_url)
    reads = source if isinstance(source, PostgresReads) else None
    kept = runtime.settings.cache_mb * 2**20
    return CurrentState(source, runtime.keyring, max_bytes=kept), reads


def event_source(
    app: CrmApplication, keys: KeyStore, database_url: str | None
) -> PostgresReads | StoreEvents:
    """The `EventSource` over `app`'s store: awaited queries on PostgreSQL (at
    `database_url`), local ones otherwise."""
    recorder, snapshots = app.recorder, app.snapshot_recorder
    if database_url is not None and isinstance(recorder, PostgresAggregateRecorder):
        assert isinstance(snapshots, PostgresAggregateRecorder)
        schema = recorder.datastore.schema
        return PostgresReads(
            database_url, schema, recorder.events_table_name, snapshots.events_table_name
        )
    return StoreEvents(recorder, snapshots, keys)


def read_models_on_loop(models: ReadModels, reads: PostgresReads | None) -> LoopReadModels:
    """Awaited on PostgreSQL; on SQLite, direct on a reader connection of its own."""
    store: ReadModelStore = models.store
    if reads is not None and store.dialect == "postgresql":
        return AwaitedReadModels(reads, models)
    return DirectReadModels(ReadModels(store.opener()(), models.clock))
