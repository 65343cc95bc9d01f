"""PostgreSQL reads awaited on the API's event loop: no worker thread per request.

Up to `POOL_SIZE` psycopg `AsyncConnection`s per process (made by the first reads, on
the loop that serves the API; a plain list of idle ones behind a fair semaphore:
psycopg_pool's machinery cost ~30 us of Python per checkout) answer the read paths'
questions (a connection whose query failed or was cancelled is closed, not reused).
Requests get a connection in the order they asked: with an `asyncio.Queue` of idle
connections, a request arriving just as one was released took it before the waiter it
was handed to had run, and that waiter queued again at the back. Under saturation
(16 callers, 8 connections) that starved a few requests: a p99 of 35-100 ms for a
department page or the statistics, at a p50 of 7 ms.

Two bounds keep one costly read from stalling the others:

* every statement has a deadline (`statement_timeout`, `CRM_READ_QUERY_SECONDS`, 1 s by
  default; PostgreSQL cancels it, psycopg raises `QueryCanceled` and the reads raise
  `QueryTimeoutError` from it, answered as a 503 `query-timeout`). A read-model query
  normally takes milliseconds; one whose filter matches nothing scans its whole
  department (1.5-2.9 s at a million customers). The point reads share the bound: index
  probes, far below it, and a connection they hold past it would be as lost to the
  others as a list's;
* read-model queries (`fetch`: department pages, search, timelines, statistics) take at
  most `LIST_SHARE` of the connections at once, so a point read (an aggregate's events,
  keys, the head) always finds one: eight looping requests for a missing tag held all
  eight, and another principal's `GET /v1/customers/{id}` waited up to 5.3 s. Of
  those, one principal's queries hold at most `LIST_SHARE_EACH` (its turns are taken
  before `fetch` is asked: `services.api.query_turns`), so another principal's list
  finds one of the others: one agent's eight looping slow lists held the whole share
  (four then), and another's department page waited 2-3 s. A read-model query takes
  its places (of the share, then a connection) as its caller says (`Take`: its turn's,
  which waits at most the deadline for one not free, as held up by others). Two
  principals' parts fill the share: a query of the second's past it held its turn,
  unbounded, for as long as the share stayed full, and its principal's next query was
  refused 429, as if for its own load.

* `events_after`: an aggregate's stored events newer than a version (the event store's
  table, a prepared binary statement; `services.current_state` keeps the rest), and
  `events_after_each`: those of several aggregates in one query;
* `from_snapshot`, `put_snapshot`: an aggregate's newest snapshot (`domain.snapshot`)
  with the events after it, and a new one in place of the older;
* `head`: the newest committed position (`services.current_state` asks it once for
  many concurrent reads);
* `keys`: the data keys of some customers (`crm_subject_keys`), once per customer and
  process, so opening personal fields never blocks the loop (`key_rows`: as the rows
  come, for a page's keys, looked up by `UUID.int`); `create_key`: a new
  customer's, so sealing its registration does not either; `erased_since`: the keys
  other processes destroyed lately (`services.erasure_watch`);
* `fetch`: a read-model query as `ReadModelStore.fetch` runs it (same SQL, views and
  row types; times at the calendar's edges through the slower loader only when psycopg's
  C loader refused one, as `consumers.pg_times.with_edges` does), for
  `services.api.loop_reads`.

Statements are composed once and kept as bytes. The connections belong to the event
loop that first used them, as the group committer's connection does.
I/O: PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple
from uuid import UUID

import anyio
import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row

from consumers.key_stores import PG_ERASED_SINCE, PG_LOAD_MANY, uuid_array
from consumers.pg_times import TIMESTAMPTZ, EdgeTimestamptzLoader
from consumers.readmodel_store import ReadModelNotBuilt
from projections.base import ColumnType
from services.event_source import log_unstored
from services.read_deadline import QueryTimeoutError

Row = dict[str, Any]
POOL_SIZE = 8
LIST_SHARE_EACH = 4
"""The most connections one principal's read-model queries hold at once (`QueryTurns`):
what all principals' could hold before. With two, one principal's 16 callers (as `make
bench`'s) cost 14-24 % more CPU a department page or statistic, at fewer requests/s
(`uvicorn`, one worker, alternating runs)."""
LIST_SHARE = LIST_SHARE_EACH + 2
"""The most connections read-model queries hold at once: one principal's part and two
for everyone else's; the rest (two) serve point reads."""
Take = Callable[[anyio.Semaphore], Awaitable[None]]
"""How a read-model query takes a place it shares with others' (`PostgresReads.fetch`):
`QueryTurns`' turns bound the wait and keep it from their principal's account."""
QUERY_SECONDS = 1.0
"""The default of `CRM_READ_QUERY_SECONDS` (`services.settings`)."""
_CREATE_KEY = (
    b"INSERT INTO crm_subject_keys (subject, key) VALUES (%s, %s) ON CONFLICT (subject) DO NOTHING"
)
_KEY = b"SELECT key FROM crm_subject_keys WHERE subject = %s"


async def _acquired(place: anyio.Semaphore) -> None:
    """`Take` for reads that need no bound of their own: `place` in turn."""
    await place.acquire()


class _Connection(NamedTuple):
    """A connection with its two cursors, kept for its whole life (a cursor costs
    ~30 us of Python to make; the statements are prepared once per connection)."""

    conn: AsyncConnection[Any]
    tuples: AsyncCursor[tuple[Any, ...]]
    dicts: AsyncCursor[Row]
    edges: AsyncCursor[Row]  # times at the calendar's edges: a Python loader, ~1 us a value


class PostgresReads:
    def __init__(
        self,
        database_url: str,
        schema: str,
        events_table: str,
        snapshots_table: str,
        query_seconds: float = QUERY_SECONDS,
    ) -> None:
        self._url = database_url
        self._query_seconds = query_seconds
        self._options = (
            f"-c timezone=UTC -c statement_timeout={max(1, round(query_seconds * 1000))}"
        )
        table = sql.Identifier(schema), sql.Identifier(events_table)
        snapshots = sql.Identifier(schema), sql.Identifier(snapshots_table)
        self._from_snapshot = (  # the snapshot's row (true), and the events' (false)
            sql.SQL(
                "WITH s AS (SELECT originator_version, topic, state FROM {0}.{1}"
                " WHERE originator_id = %(id)s ORDER BY originator_version DESC LIMIT 1)"
                " SELECT true, originator_version, topic, state FROM s"
                " UNION ALL (SELECT false, originator_version, topic, state FROM {2}.{3}"
                " WHERE originator_id = %(id)s"
                " AND originator_version > coalesce((SELECT originator_version FROM s), 0)"
                " ORDER BY originator_version LIMIT %(limit)s)"
            )
            .format(*snapshots, *table)
            .as_bytes()
        )
        self._put_snapshot = (  # and remove the older ones: a state may weigh megabytes
            sql.SQL(
                "WITH older AS (DELETE FROM {0}.{1}"
                " WHERE originator_id = %(id)s AND originator_version < %(version)s)"
                " INSERT INTO {0}.{1} (originator_id, originator_version, topic, state)"
                " VALUES (%(id)s, %(version)s, %(topic)s, %(state)s) ON CONFLICT DO NOTHING"
            )
            .format(*snapshots)
            .as_bytes()
        )
        self._events = (
            sql.SQL(
                "SELECT originator_version, topic, state FROM {}.{}"
                " WHERE originator_id = %s AND originator_version > %s"
                " ORDER BY originator_version LIMIT %s"
            )
            .format(*table)
            .as_bytes()
        )
        self._events_each = (
            sql.SQL(
                "SELECT w.n, e.originator_id, e.originator_version, e.topic, e.state"
                " FROM unnest(%s::uuid[], %s::int8[]) WITH ORDINALITY AS w(id, version, n)"
                " CROSS JOIN LATERAL (SELECT originator_id, originator_version, topic, state"
                " FROM {}.{} WHERE originator_id = w.id AND originator_version > w.version"
                " ORDER BY originator_version LIMIT %s) e"
                " ORDER BY w.n, e.originator_version"
            )
            .format(*table)
            .as_bytes()
        )
        self._head = sql.SQL("SELECT max(notification_id) FROM {}.{}").format(*table).as_bytes()
        self._composed: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}
        self._idle: list[_Connection] = []
        self._turns: anyio.Semaphore | None = None  # made on the serving loop
        self._list_turns: anyio.Semaphore | None = None  # `LIST_SHARE` of them

    async def events_after(self, aggregate_id: UUID, version: int, limit: int) -> list[StoredEvent]:
        async with self._connection() as c:
            await c.tuples.execute(self._events, (aggregate_id, version, limit), prepare=True)
            rows = await c.tuples.fetchall()
        return [StoredEvent(aggregate_id, v, topic, state) for v, topic, state in rows]

    async def events_after_each(
        self, wanted: Sequence[tuple[UUID, int]], limit: int
    ) -> list[list[StoredEvent]]:
        """`events_after` of each of `wanted` (an aggregate may come twice), one query."""
        ids = uuid_array(aggregate_id for aggregate_id, _ in wanted)
        versions = "{" + ",".join([str(version) for _, version in wanted]) + "}"
        async with self._connection() as c:
            await c.tuples.execute(self._events_each, (ids, versions, limit), prepare=True)
            rows = await c.tuples.fetchall()
        each: list[list[StoredEvent]] = [[] for _ in wanted]
        for n, aggregate_id, version, topic, state in rows:
            each[n - 1].append(StoredEvent(aggregate_id, version, topic, state))
        return each

    async def from_snapshot(
        self, aggregate_id: UUID, limit: int
    ) -> tuple[StoredEvent | None, list[StoredEvent]]:
        """The newest snapshot and the events after it, one query (`EventSource`). The
        rows come in no promised order; they are sorted here, not by PostgreSQL (which
        copied a page of states to sort them: 0.8 ms of a 4 ms query)."""
        values = {"id": aggregate_id, "limit": limit}
        async with self._connection() as c:
            await c.tuples.execute(self._from_snapshot, values, prepare=True)
            rows = await c.tuples.fetchall()
        found, stored = None, []
        for is_snapshot, version, topic, state in rows:
            if is_snapshot:
                found = StoredEvent(aggregate_id, version, topic, state)
            else:
                stored.append(StoredEvent(aggregate_id, version, topic, state))
        stored.sort(key=attrgetter("originator_version"))  # as a rule in order: one pass
        return found, stored

    async def put_snapshot(self, snapshot: StoredEvent) -> None:
        """Store `snapshot` (unless one of its version is), and remove the aggregate's
        older ones; a failure (a full disk, say) is logged, not raised."""
        s = snapshot
        values = {"id": s.originator_id, "version": s.originator_version}
        try:
            async with self._connection() as c:
                await c.tuples.execute(
                    self._put_snapshot, values | {"topic": s.topic, "state": s.state}
                )
        except (psycopg.Error, QueryTimeoutError) as error:
            log_unstored(snapshot, error)

    async def head(self) -> int:
        """The newest committed global position (0 when empty)."""
        async with self._connection() as c:
            await c.tuples.execute(self._head, prepare=True)
            row = await c.tuples.fetchone()
        return int(row[0] or 0) if row else 0

    async def keys(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        return dict(await self.key_rows(subjects))

    async def key_rows(self, subjects: Sequence[UUID]) -> list[tuple[UUID, bytes | None]]:
        async with self._connection() as c:
            await c.tuples.execute(PG_LOAD_MANY, (uuid_array(subjects),), prepare=True)
            return await c.tuples.fetchall()

    async def erased_since(
        self, since: datetime | None, otherwise: timedelta
    ) -> tuple[datetime, list[UUID]]:
        """The database's time, and the customers whose keys were destroyed at or after
        `since` (None: `otherwise` before that time): `PG_ERASED_SINCE`."""
        async with self._connection() as c:
            await c.tuples.execute(PG_ERASED_SINCE, (since, otherwise), prepare=True)
            row = await c.tuples.fetchone()
        assert row is not None  # one row, always
        return row[0], row[1]

    async def create_key(self, subject: UUID, key: bytes) -> bytes | None:
        """`PostgresKeyStore.create`, awaited: the key is read back by a second statement,
        whose snapshot sees a key another process stored meanwhile."""
        async with self._connection() as c:
            await c.tuples.execute(_CREATE_KEY, (subject, key))
            await c.tuples.execute(_KEY, (subject,))
            row = await c.tuples.fetchone()
        return None if row is None else row[0]

    async def fetch(
        self,
        query: str,
        tables: dict[str, str],
        params: dict[str, Any],
        types: Mapping[str, ColumnType] | None = None,
        take: Take = _acquired,
    ) -> list[Row]:
        """`PostgresStore.fetch`, awaited (`types` changes nothing here either), on at
        most `LIST_SHARE` connections at once, each place taken by `take`."""
        statement = self._statement(query, tables)
        if self._list_turns is None:
            self._list_turns = anyio.Semaphore(LIST_SHARE, fast_acquire=True)
        await take(self._list_turns)
        try:
            async with self._connection(take) as c:
                await c.dicts.execute(statement, params)
                return await c.dicts.fetchall()
        except psycopg.errors.UndefinedTable as error:
            raise ReadModelNotBuilt(tables) from error
        except psycopg.DataError:  # a time psycopg's C loader refused: at the calendar's edge
            async with self._connection(take) as c:
                await c.edges.execute(statement, params)
                return await c.edges.fetchall()
        finally:
            self._list_turns.release()

    def _statement(self, query: str, tables: dict[str, str]) -> bytes:
        key = (query, tuple(sorted(tables.items())))
        statement = self._composed.get(key)
        if statement is None:
            names = {k: sql.Identifier(*v.split(".")) for k, v in tables.items()}
            statement = self._composed[key] = sql.SQL(query).format(**names).as_bytes()
        return statement

    @asynccontextmanager
    async def _connection(self, take: Take = _acquired) -> AsyncIterator[_Connection]:
        """An idle connection, or a new one while fewer than `POOL_SIZE` exist, else the
        next one released, in turn (`take`n). One that failed is closed and replaced by
        the next request; one whose statement ran past its deadline is idle again, and
        kept (and the statement's `QueryCanceled` raised as the `QueryTimeoutError` it is)."""
        if self._turns is None:
            self._turns = anyio.Semaphore(POOL_SIZE, fast_acquire=True)
        await take(self._turns)  # FIFO: a release hands the turn to the oldest waiter
        try:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                yield connection
            except BaseException as error:  # lost, failed or cancelled mid-query: not reused
                if _timed_out(error, connection.conn):
                    self._idle.append(connection)
                    raise QueryTimeoutError(self._query_seconds) from error
                await connection.conn.close()
                raise
            self._idle.append(connection)
        finally:
            self._turns.release()

    async def _connect(self) -> _Connection:
        conn = await AsyncConnection.connect(
            self._url, autocommit=True, options=self._options, connect_timeout=5
        )
        edges = conn.cursor(binary=True, row_factory=dict_row)
        edges.adapters.register_loader(TIMESTAMPTZ, EdgeTimestamptzLoader)
        tuples = conn.cursor(binary=True, row_factory=tuple_row)
        return _Connection(conn, tuples, conn.cursor(binary=True, row_factory=dict_row), edges)

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().conn.close()


def _timed_out(error: BaseException, conn: AsyncConnection[Any]) -> bool:
    """Whether `error` is the deadline's cancel of a statement on `conn`, idle again."""
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    return isinstance(error, psycopg.errors.QueryCanceled) and idle
