"""PostgreSQL reads awaited on the API's event loop: no worker thread per request.

One psycopg `AsyncConnectionPool` per process (opened by the first read, on the loop
that serves the API) answers the read paths' three questions:

* `events_after`: an aggregate's stored events newer than a version (the event store's
  table, a prepared binary statement; `services.current_state` keeps the rest);
* `keys`: the data keys of some customers (`crm_subject_keys`), once per customer and
  process, so opening personal fields never blocks the loop;
* `fetch`: a read-model query as `ReadModelStore.fetch` runs it (same SQL, views and
  row types, timestamps at the calendar's edges included), for `services.loop_reads`.

Statements are composed once and kept as bytes. The pool belongs to the event loop that
first used it, as the group committer's connection does.
I/O: PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from consumers.pg_times import TIMESTAMPTZ, EdgeTimestamptzLoader
from projections.base import ColumnType

Row = dict[str, Any]
POOL_SIZE = 8
_KEYS = b"SELECT subject, key FROM crm_subject_keys WHERE subject = ANY(%s)"


class PostgresReads:
    def __init__(self, database_url: str, schema: str, events_table: str) -> None:
        self._url = database_url
        self._events = (
            sql.SQL(
                "SELECT originator_version, topic, state FROM {}.{}"
                " WHERE originator_id = %s AND originator_version > %s"
                " ORDER BY originator_version"
            )
            .format(sql.Identifier(schema), sql.Identifier(events_table))
            .as_bytes()
        )
        self._composed: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()

    async def events_after(self, aggregate_id: UUID, version: int) -> list[StoredEvent]:
        pool = await self._opened()
        async with pool.connection() as conn:
            cursor = conn.cursor(binary=True, row_factory=tuple_row)
            await cursor.execute(self._events, (aggregate_id, version), prepare=True)
            rows = await cursor.fetchall()
        return [StoredEvent(aggregate_id, v, topic, state) for v, topic, state in rows]

    async def keys(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        pool = await self._opened()
        async with pool.connection() as conn:
            cursor = conn.cursor(binary=True, row_factory=tuple_row)
            await cursor.execute(_KEYS, (list(subjects),), prepare=True)
            return dict(await cursor.fetchall())

    async def fetch(
        self,
        query: str,
        tables: dict[str, str],
        params: dict[str, Any],
        types: Mapping[str, ColumnType] | None = None,
    ) -> list[Row]:
        """`PostgresStore.fetch`, awaited (`types` changes nothing here either)."""
        pool = await self._opened()
        statement = self._statement(query, tables)
        async with pool.connection() as conn:
            cursor = conn.cursor(binary=True, row_factory=dict_row)
            cursor.adapters.register_loader(TIMESTAMPTZ, EdgeTimestamptzLoader)
            await cursor.execute(statement, params)
            return await cursor.fetchall()

    def _statement(self, query: str, tables: dict[str, str]) -> bytes:
        key = (query, tuple(sorted(tables.items())))
        statement = self._composed.get(key)
        if statement is None:
            names = {k: sql.Identifier(*v.split(".")) for k, v in tables.items()}
            statement = self._composed[key] = sql.SQL(query).format(**names).as_bytes()
        return statement

    async def _opened(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                        self._url,
                        min_size=1,
                        max_size=POOL_SIZE,
                        kwargs={"options": "-c timezone=UTC", "autocommit": True},
                        open=False,
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
