"""The embedded API's read-model queries, run directly on its event loop (SQLite), and
which rows of a list's page lag behind the event store.

Local queries answer in tens of microseconds, faster than a hop to a worker thread, so
`DirectReadModels` runs them on the loop itself, on connections of their own (the
follower's writes never hold them up: WAL readers do not wait for a writer). One that
runs past `ON_LOOP_SECONDS` (a filter matching nothing scans its whole department:
557 ms at 200,000 customers, with every other caller waiting) is interrupted (a
progress handler, `_Deadline`) and run again on a worker thread, on a connection of its
own, one query at a time, up to `CRM_READ_QUERY_SECONDS`; past that, interrupted again
(503 `query-timeout`, as PostgreSQL's `statement_timeout` is there). Each principal's
queries take turns of their own first (`services.api.query_turns`, `OFF_LOOP_EACH` at
once: see `services.api.loop_reads`).

A list's page also says which of its rows show an aggregate with stored events their
projection has not applied (`behind`). The follower stores the event-store position it
applied up to with the rows; read *before* the page's query (its rows are at least that
new), an aggregate is behind when its newest stored event is past it (one step of the
event store's primary key each, `_NEWER`; the store is another file). When the store's
head, read after that position, is no further, nothing is behind and `_NEWER` is not
asked (a ninth of a page's CPU): every event stored before the request read the head is
applied, and one stored after is concurrent with the read, which answers as of that
moment, as it would had it come a moment earlier. An in-memory store says all are.

In: query functions over `services.api.read_models.ReadModels`. Out: their answers, and
the aggregates behind. I/O: the SQLite read-model store and event store it is given.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import TypeVar
from uuid import UUID

import anyio
from anyio import to_thread
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from consumers.readmodel_store import STORE_TOPIC
from consumers.store_sqlite import SqliteStore
from services.api.query_turns import QueryTurns
from services.api.read_models import Page, ReadModels, Rows
from services.read_deadline import QueryTimeoutError
from services.sqlite_recorder import HeadReader

T = TypeVar("T")

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
