"""The PostgreSQL connections of the API's awaited reads (`services.pg_reads`), held on
its event loop: no worker thread per request.

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

The connections belong to the event loop that first used them, as the group committer's
connection does. In: a database URL and the deadline. Out: connections in turn, each
with its cursors (`ReadConnection`). I/O: PostgreSQL connections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import anyio
import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row

from consumers.pg_times import TIMESTAMPTZ, EdgeTimestamptzLoader
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


async def acquired(place: anyio.Semaphore) -> None:
    """`Take` for reads that need no bound of their own: `place` in turn."""
    await place.acquire()


class ReadConnection(NamedTuple):
    """A connection with its two cursors, kept for its whole life (a cursor costs
    ~30 us of Python to make; the statements are prepared once per connection)."""

    conn: AsyncConnection[Any]
    tuples: AsyncCursor[tuple[Any, ...]]
    dicts: AsyncCursor[Row]
    edges: AsyncCursor[Row]  # times at the calendar's edges: a Python loader, ~1 us a value


class ReadConnections:
    """Up to `POOL_SIZE` connections to `database_url`, each statement bounded by
    `query_seconds`, handed out in the order asked (see above)."""

    def __init__(self, database_url: str, query_seconds: float = QUERY_SECONDS) -> None:
        self._url = database_url
        self._query_seconds = query_seconds
        self._options = (
            f"-c timezone=UTC -c statement_timeout={max(1, round(query_seconds * 1000))}"
        )
        self._idle: list[ReadConnection] = []
        self._turns: anyio.Semaphore | None = None  # made on the serving loop
        self._list_turns: anyio.Semaphore | None = None  # `LIST_SHARE` of them

    def list_share(self) -> anyio.Semaphore:
        """The places of read-model queries: `LIST_SHARE` of the connections (made on the
        serving loop). A query takes one before its connection and releases it after."""
        if self._list_turns is None:
            self._list_turns = anyio.Semaphore(LIST_SHARE, fast_acquire=True)
        return self._list_turns

    @asynccontextmanager
    async def connection(self, take: Take = acquired) -> AsyncIterator[ReadConnection]:
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

    async def _connect(self) -> ReadConnection:
        conn = await AsyncConnection.connect(
            self._url, autocommit=True, options=self._options, connect_timeout=5
        )
        edges = conn.cursor(binary=True, row_factory=dict_row)
        edges.adapters.register_loader(TIMESTAMPTZ, EdgeTimestamptzLoader)
        tuples = conn.cursor(binary=True, row_factory=tuple_row)
        return ReadConnection(conn, tuples, conn.cursor(binary=True, row_factory=dict_row), edges)

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().conn.close()


def _timed_out(error: BaseException, conn: AsyncConnection[Any]) -> bool:
    """Whether `error` is the deadline's cancel of a statement on `conn`, idle again."""
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    return isinstance(error, psycopg.errors.QueryCanceled) and idle
