"""The API's reads, run on its event loop: which source answers them on each store.

* PostgreSQL: `services.pg_reads` awaits every query on the loop; read-model queries
  through `services.api.awaited_reads` (`AwaitedReadModels`).
* SQLite (embedded): local queries answer in tens of microseconds, faster than a hop to a
  worker thread, so they run on the loop itself, on connections of their own (the
  follower's writes never hold them up: WAL readers do not wait for a writer). One that
  runs past `ON_LOOP_SECONDS` (a filter matching nothing scans its whole department:
  557 ms at 200,000 customers, with every other caller waiting) is interrupted (a
  progress handler) and run again on a worker thread, on a connection of its own, one
  query at a time, up to `CRM_READ_QUERY_SECONDS`; past that, interrupted again (503
  `query-timeout`, as PostgreSQL's `statement_timeout` is there).

Each principal's read-model queries take turns of their own first
(`services.api.query_turns`): on PostgreSQL `LIST_SHARE_EACH` of the list share at once,
embedded one query at a time. So the worker thread's queue holds at most one query of
each principal, and a slow query waits behind at most one of each other principal's
(at most the deadline each), not behind all that one principal looped; a principal's
queries past its slow one wait behind it before they take the loop at all (each is
tried on the loop first, and a slow one holds it for `ON_LOOP_SECONDS`).
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
* SQLite: the follower stores the event-store position it applied up to with the rows;
  read *before* the page's query (its rows are at least that new), an aggregate is
  behind when its newest stored event is past it (one step of the event store's primary
  key each, `_NEWER`; the store is another file). When the store's head, read after that
  position, is no further, nothing is behind and `_NEWER` is not asked (a ninth of a
  page's CPU): every event stored before the request read the head is applied, and one
  stored after is concurrent with the read, which answers as of that moment, as it
  would had it come a moment earlier. An in-memory store says all are.
I/O: through the stores it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar
from uuid import UUID

import anyio
from anyio import to_thread
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder

from consumers.key_stores import LOCK_SECONDS, SqliteKeyStore, locked
from consumers.keyring import KeyStore
from consumers.readmodel_store import STORE_TOPIC, ReadModelStore
from consumers.store_sqlite import SqliteStore
from services.api.awaited_reads import AwaitedReadModels
from services.api.query_turns import QueryTurns
from services.api.read_models import Page, ReadModels, Rows
from services.bootstrap import Runtime
from services.current_state import CurrentState
from services.event_source import log_unstored
from services.event_store import CrmApplication
from services.pg_reads import QUERY_SECONDS, PostgresReads
from services.read_deadline import QueryTimeoutError
from services.sqlite_recorder import HeadReader

T = TypeVar("T")
Row = dict[str, Any]


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


ON_LOOP_SECONDS = 0.02
"""How long a read-model query may hold the loop (SQLite) before it is run again off it:
a page answers in well under a millisecond; a query past this scans."""
OFF_LOOP_EACH = 1
"""The read-model queries one principal runs at once, embedded (`QueryTurns`): on the
loop they never overlap, and the worker thread runs one at a time anyway."""


class _Deadline:
    """Interrupts the statements of one SQLite connection that run past `until` (checked
    every `steps` virtual-machine instructions: ~1 us of Python a check; 1,000 steps
    take some 10-50 us, 100,000 a few ms)."""

    def __init__(self, conn: sqlite3.Connection, steps: int) -> None:
        self.until = math.inf
        conn.set_progress_handler(self._passed, steps)

    def _passed(self) -> bool:
        return time.monotonic() > self.until

    @contextlib.contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        self.until = time.monotonic() + seconds
        try:
            yield
        finally:
            self.until = math.inf


def _interrupted(error: sqlite3.OperationalError) -> bool:
    return error.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT


class DirectReadModels:
    """Read models whose queries are fast enough to run on the loop (SQLite), and the
    rare one that is not, run again off it (see above)."""

    def __init__(
        self, models: ReadModels, events: ApplicationRecorder, query_seconds: float
    ) -> None:
        self._models = models
        self._events = events
        self._head_reader = HeadReader.of(events)  # None in memory (tests)
        self._generations: dict[str, int] = {}
        self._query_seconds = query_seconds
        store = models.store
        self._on_loop = _Deadline(store.conn, 1000) if isinstance(store, SqliteStore) else None
        self._off_loop: tuple[ReadModels, _Deadline] | None = None  # made when first needed
        self._off_loop_turn = anyio.Semaphore(1, fast_acquire=True)
        self._turns = QueryTurns(OFF_LOOP_EACH, query_seconds)

    async def run(self, query: Callable[[ReadModels], T], principal: str) -> T:
        if self._on_loop is None:  # in memory (tests)
            return query(self._models)
        async with self._turns.turn(principal) as turn:  # its slow one first: see above
            try:
                with self._on_loop.within(ON_LOOP_SECONDS):
                    return query(self._models)
            except sqlite3.OperationalError as error:
                if not _interrupted(error):
                    raise
            await turn.take(self._off_loop_turn)  # one at a time: the loop needs a core too
            try:
                # not abandoned when the request is cancelled: the connection is in use till then
                return await to_thread.run_sync(self._run_off_loop, query)
            finally:
                self._off_loop_turn.release()

    def _run_off_loop(self, query: Callable[[ReadModels], T]) -> T:
        if self._off_loop is None:
            store = self._models.store.opener()()
            assert isinstance(store, SqliteStore)
            self._off_loop = ReadModels(store, self._models.clock), _Deadline(store.conn, 100_000)
        models, deadline = self._off_loop
        try:
            with deadline.within(self._query_seconds):
                return query(models)
        except sqlite3.OperationalError as error:
            if _interrupted(error):
                raise QueryTimeoutError(self._query_seconds) from error
            raise

    async def behind(
        self, query: Callable[[ReadModels], Page], rows: Rows | None, principal: str
    ) -> tuple[Page, set[UUID]]:
        if rows is None:
            return await self.run(query, principal), set()
        position = self._applied_position(rows.projection)  # before the page: see above
        caught_up = self._head() <= position  # read after the position: see above
        page = await self.run(query, principal)
        return page, set() if caught_up else self._newer(position, _aggregates(page, rows))

    def _head(self) -> float:
        """The event store's newest position (in memory, tests: none known, infinite)."""
        if self._head_reader is not None:  # the file's, on the loop's own connection
            return self._head_reader()
        events = self._events
        if not isinstance(events, SQLiteApplicationRecorder):
            return math.inf
        return events.max_notification_id() or 0

    def _applied_position(self, projection: str) -> int:
        """The event-store position `projection`'s live generation applied up to (the
        generation is kept: a rebuild's switch drops the old one's tables)."""
        store = self._models.store
        for _ in range(2):
            generation = self._generations.get(projection) or store.live_generation(projection)
            if generation is None:
                return 0
            try:
                found = store.fetch(_POSITION, {"p": f"{projection}_v{generation}._positions"}, {})
            except sqlite3.OperationalError:  # no such table: switched since
                self._generations.pop(projection, None)
                continue
            self._generations[projection] = generation
            return int(found[0]["next_offset"]) - 1 if found else 0
        return 0

    def _newer(self, position: int, ids: list[UUID]) -> set[UUID]:
        """Of `ids`, the aggregates whose newest stored event is past `position`."""
        events = self._events
        if not ids:
            return set()
        if not isinstance(events, SQLiteApplicationRecorder):  # in memory (tests): all
            return set(ids)
        values = ", ".join(["(?)"] * len(ids))
        query = _NEWER.format(values=values, events=events.events_table_name)
        with events.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, [*(i.hex for i in ids), position])
            return {UUID(row[0]) for row in cursor.fetchall()}

    async def aclose(self) -> None:
        self._models.store.close()
        if self._off_loop is not None:
            self._off_loop[0].store.close()
        if self._head_reader is not None:
            self._head_reader.close()


_POSITION = f"SELECT next_offset FROM {{p}} WHERE topic = '{STORE_TOPIC}' AND partition = 0"
_NEWER = (
    "SELECT column1 FROM (VALUES {values}) WHERE (SELECT rowid FROM {events}"
    " WHERE originator_id = column1 ORDER BY originator_version DESC LIMIT 1) > ?"
)
"""An aggregate's newest event is the last of its primary key (id, version), and its
rowid is its position: one step of the index each, however long the history."""


def _aggregates(page: Page, rows: Rows) -> list[UUID]:
    """The aggregates a page's rows show, each once."""
    return list(dict.fromkeys(row[rows.aggregate] for row in page["items"]))


class StoreEvents:
    """`services.event_source.EventSource` over a local event store (SQLite or memory)
    and key store, queried on the loop.

    Keys (SQLite): keys.db keeps a rollback journal (`consumers.key_stores`), so another
    process writing it (a backup, `sqlite3` in a shell) holds off its readers too. Each
    read of keys and `create_key` is tried on the loop without waiting for a lock
    (`SqliteKeysAtOnce`); refused for one, it is done again on a worker thread through
    the key store, which waits for the lock up to `LOCK_SECONDS` (then 503
    `storage-busy`). One at a time there (the store's connection serves one anyway),
    each waiting its turn at most `LOCK_SECONDS`; the loop serves all else meanwhile.
    (Waiting on the loop, one locked read stopped every request, /healthz too, 5 s.)"""

    def __init__(
        self, recorder: ApplicationRecorder, snapshots: AggregateRecorder, keys: KeyStore
    ) -> None:
        self._recorder = recorder
        self._snapshots = snapshots
        self._keys = keys
        self._keys_at_once = keys.at_once() if isinstance(keys, SqliteKeyStore) else None
        self._keys_turn = anyio.Semaphore(1, fast_acquire=True)
        self._head_reader = HeadReader.of(recorder)  # None in memory (tests)

    async def head(self) -> int:
        if self._head_reader is None:
            return self._recorder.max_notification_id() or 0
        return self._head_reader()

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
        if self._keys_at_once is None:  # in memory (tests)
            return self._key_rows(subjects)
        try:
            return self._keys_at_once.rows(subjects)
        except sqlite3.OperationalError as error:
            if not locked(error):
                raise
            refused = error
        return await self._waiting(refused, self._key_rows, subjects)

    async def key_rows(self, subjects: Sequence[UUID]) -> list[tuple[UUID, bytes | None]]:
        return list((await self.keys(subjects)).items())

    async def create_key(self, subject: UUID, key: bytes) -> bytes | None:
        if self._keys_at_once is None:  # in memory (tests)
            return self._keys.create(subject, key)
        try:
            return self._keys_at_once.create(subject, key)
        except sqlite3.OperationalError as error:
            if not locked(error):
                raise
            refused = error
        return await self._waiting(refused, self._keys.create, subject, key)

    def _key_rows(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        found = self._keys.load_many(subjects)
        return {s: k for s, k in found.items() if k is not None or self._keys.destroyed(s)}

    async def _waiting(
        self, refused: sqlite3.OperationalError, call: Callable[..., T], *args: Any
    ) -> T:
        """`call(*args)` on a worker thread, in the keys' turn (see the class), after the
        loop's attempt was `refused` for a lock; `refused` again if the turn did not come."""
        with anyio.move_on_after(LOCK_SECONDS) as waited:
            await self._keys_turn.acquire()
        if waited.cancelled_caught:
            raise refused
        try:
            # not abandoned when the request is cancelled: the connection is in use till then
            return await to_thread.run_sync(call, *args)
        finally:
            self._keys_turn.release()

    def close(self) -> None:
        if self._keys_at_once is not None:
            self._keys_at_once.close()
        if self._head_reader is not None:
            self._head_reader.close()


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
