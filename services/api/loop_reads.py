"""The API's reads, run on its event loop: which source answers them on each store.

* PostgreSQL: `services.pg_reads` awaits every query on the loop; read-model queries
  through `services.api.awaited_reads` (`AwaitedReadModels`).
* SQLite (embedded): local queries answer in tens of microseconds, faster than a hop to a
  worker thread, so they run on the loop itself (`services.api.direct_reads`, which
  runs one that holds the loop too long again on a worker thread, bounded by
  `CRM_READ_QUERY_SECONDS`), and current state reads the event store there too
  (`services.api.local_events`).

Each principal's read-model queries take turns of their own first
(`services.api.query_turns`): on PostgreSQL `LIST_SHARE_EACH` of the list share at once,
embedded one query at a time. So the worker thread's queue holds at most one query of
each principal, and a slow query waits behind at most one of each other principal's
(at most the deadline each), not behind all that one principal looped; a principal's
queries past its slow one wait behind it before they take the loop at all (each is
tried on the loop first, and a slow one holds it for `direct_reads.ON_LOOP_SECONDS`).
A query whose principal's turn did not come within the deadline is a 429
`too-many-queries`, its own load; a place shared with other principals (the worker
thread; a list connection) is taken through the turn (`take`), and waited for at most
the deadline: past it, or when its principal's turn was held by such a wait, the query
is a 503 `query-timeout` (`SharedReadsBusy`), others' load.

A list's page also says which of its rows show an aggregate with stored events their
projection has not applied (`behind`), so that the access model judges those by the
aggregate's state now as well: normally none, but every change since while a consumer
is down. On each store the cheapest exact way:

* PostgreSQL: the list's own statement asks it of each row (`services.api.awaited_reads`:
  each projection's `_applied` versions against the event store, in the same database);
* SQLite: the follower stores the event-store position it applied up to with the rows,
  and an aggregate is behind when its newest stored event is past it
  (`services.api.direct_reads`).

This module picks, for a runtime, the source of each kind of read (`current_state_of`,
`event_source`, `read_models_on_loop`); `LoopReadModels` is what the routes are given.
I/O: through the stores it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresAggregateRecorder

from consumers.keyring import KeyStore
from consumers.readmodel_store import ReadModelStore
from services.api.awaited_reads import AwaitedReadModels
from services.api.direct_reads import DirectReadModels
from services.api.local_events import StoreEvents
from services.api.read_models import Page, ReadModels, Rows
from services.bootstrap import Runtime
from services.current_state import CurrentState
from services.event_store import CrmApplication
from services.pg_read_connections import QUERY_SECONDS
from services.pg_reads import PostgresReads

T = TypeVar("T")


class LoopReadModels(Protocol):
    async def run(self, query: Callable[[ReadModels], T], principal: str) -> T:
        """`query` (e.g. `lambda models: models.customers(...)`) without blocking the loop,
        in one of `principal`'s turns (its name: `QueryTurns`)."""
        ...

    async def behind(
        self, query: Callable[[ReadModels], Page], rows: Rows | None, principal: str
    ) -> tuple[Page, set[UUID]]:
        """`query`'s page, and of the aggregates its rows show, those with stored events
        `rows.projection` has not applied (None: not asked, none)."""
        ...

    async def aclose(self) -> None: ...


def current_state_of(runtime: Runtime) -> tuple[CurrentState, PostgresReads | None]:
    """Reads of current state for the API over `runtime`'s event store, and on
    PostgreSQL the async reader that also serves its read models."""
    settings = runtime.settings
    source = event_source(
        runtime.app, runtime.keyring.store, settings.database_url, settings.read_query_seconds
    )
    reads = source if isinstance(source, PostgresReads) else None
    if isinstance(source, StoreEvents):
        runtime.closers.append(source.close)
    kept = runtime.settings.cache_mb * 2**20
    local = isinstance(source, StoreEvents)  # its queries never await: asked at once
    return CurrentState(source, runtime.keyring, max_bytes=kept, local=local), reads


def event_source(
    app: CrmApplication,
    keys: KeyStore,
    database_url: str | None,
    query_seconds: float = QUERY_SECONDS,
) -> PostgresReads | StoreEvents:
    """The `EventSource` over `app`'s store: awaited queries on PostgreSQL (at
    `database_url`, each bounded by `query_seconds`), local ones otherwise."""
    recorder, snapshots = app.recorder, app.snapshot_recorder
    if database_url is not None and isinstance(recorder, PostgresAggregateRecorder):
        assert isinstance(snapshots, PostgresAggregateRecorder)
        schema, table = recorder.datastore.schema, recorder.events_table_name
        return PostgresReads(
            database_url, schema, table, snapshots.events_table_name, query_seconds
        )
    return StoreEvents(recorder, snapshots, keys)


def read_models_on_loop(
    models: ReadModels,
    reads: PostgresReads | None,
    events: ApplicationRecorder,
    query_seconds: float = QUERY_SECONDS,
) -> LoopReadModels:
    """Awaited on PostgreSQL; on SQLite, direct on a reader connection of its own, each
    query bounded by `query_seconds` (`reads` bound their own). `events`: the event
    store's recorder (what a page's rows may lag behind)."""
    store: ReadModelStore = models.store
    if reads is not None and store.dialect == "postgresql":
        assert isinstance(events, PostgresAggregateRecorder)  # `reads` are its database's
        table = f"{events.datastore.schema or 'public'}.{events.events_table_name}"
        return AwaitedReadModels(reads, models, table, query_seconds)
    own = ReadModels(store.opener()(), models.clock)
    return DirectReadModels(own, events, query_seconds)
