"""PostgreSQL reads awaited on the API's event loop: the statements they run.

`PostgresReads` answers the read paths' questions on the connections of
`services.pg_read_connections` (`ReadConnections`: up to `POOL_SIZE` of them, handed out
in the order asked, every statement bounded by `CRM_READ_QUERY_SECONDS`, read-model
queries on at most `LIST_SHARE` at once), with:

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
  `services.api.awaited_reads`.

Statements are composed once and kept as bytes. In: aggregate ids, versions, subjects,
read-model queries. Out: `StoredEvent`s, positions, data keys, rows. I/O: PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import sql

from consumers.key_stores import PG_ERASED_SINCE, PG_LOAD_MANY, uuid_array
from consumers.readmodel_store import ReadModelNotBuilt
from projections.base import ColumnType
from services.event_source import log_unstored
from services.pg_read_connections import QUERY_SECONDS, ReadConnections, Take, acquired
from services.read_deadline import QueryTimeoutError

Row = dict[str, Any]

_CREATE_KEY = (
    b"INSERT INTO crm_subject_keys (subject, key) VALUES (%s, %s) ON CONFLICT (subject) DO NOTHING"
)
_KEY = b"SELECT key FROM crm_subject_keys WHERE subject = %s"


class PostgresReads:
    def __init__(
        self,
        database_url: str,
        schema: str,
        events_table: str,
        snapshots_table: str,
        query_seconds: float = QUERY_SECONDS,
    ) -> None:
        self._connections = ReadConnections(database_url, query_seconds)
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

    async def events_after(self, aggregate_id: UUID, version: int, limit: int) -> list[StoredEvent]:
        async with self._connections.connection() as c:
            await c.tuples.execute(self._events, (aggregate_id, version, limit), prepare=True)
            rows = await c.tuples.fetchall()
        return [StoredEvent(aggregate_id, v, topic, state) for v, topic, state in rows]

    async def events_after_each(
        self, wanted: Sequence[tuple[UUID, int]], limit: int
    ) -> list[list[StoredEvent]]:
        """`events_after` of each of `wanted` (an aggregate may come twice), one query."""
        ids = uuid_array(aggregate_id for aggregate_id, _ in wanted)
        versions = "{" + ",".join([str(version) for _, version in wanted]) + "}"
        async with self._connections.connection() as c:
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
        async with self._connections.connection() as c:
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
            async with self._connections.connection() as c:
                await c.tuples.execute(
                    self._put_snapshot, values | {"topic": s.topic, "state": s.state}
                )
        except (psycopg.Error, QueryTimeoutError) as error:
            log_unstored(snapshot, error)

    async def head(self) -> int:
        """The newest committed global position (0 when empty)."""
        async with self._connections.connection() as c:
            await c.tuples.execute(self._head, prepare=True)
            row = await c.tuples.fetchone()
        return int(row[0] or 0) if row else 0

    async def keys(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        return dict(await self.key_rows(subjects))

    async def key_rows(self, subjects: Sequence[UUID]) -> list[tuple[UUID, bytes | None]]:
        async with self._connections.connection() as c:
            await c.tuples.execute(PG_LOAD_MANY, (uuid_array(subjects),), prepare=True)
            return await c.tuples.fetchall()

    async def erased_since(
        self, since: datetime | None, otherwise: timedelta
    ) -> tuple[datetime, list[UUID]]:
        """The database's time, and the customers whose keys were destroyed at or after
        `since` (None: `otherwise` before that time): `PG_ERASED_SINCE`."""
        async with self._connections.connection() as c:
            await c.tuples.execute(PG_ERASED_SINCE, (since, otherwise), prepare=True)
            row = await c.tuples.fetchone()
        assert row is not None  # one row, always
        return row[0], row[1]

    async def create_key(self, subject: UUID, key: bytes) -> bytes | None:
        """`PostgresKeyStore.create`, awaited: the key is read back by a second statement,
        whose snapshot sees a key another process stored meanwhile."""
        async with self._connections.connection() as c:
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
        take: Take = acquired,
    ) -> list[Row]:
        """`PostgresStore.fetch`, awaited (`types` changes nothing here either), on at
        most `LIST_SHARE` connections at once, each place taken by `take`."""
        statement = self._statement(query, tables)
        share = self._connections.list_share()
        await take(share)
        try:
            async with self._connections.connection(take) as c:
                await c.dicts.execute(statement, params)
                return await c.dicts.fetchall()
        except psycopg.errors.UndefinedTable as error:
            raise ReadModelNotBuilt(tables) from error
        except psycopg.DataError:  # a time psycopg's C loader refused: at the calendar's edge
            async with self._connections.connection(take) as c:
                await c.edges.execute(statement, params)
                return await c.edges.fetchall()
        finally:
            share.release()

    def _statement(self, query: str, tables: dict[str, str]) -> bytes:
        key = (query, tuple(sorted(tables.items())))
        statement = self._composed.get(key)
        if statement is None:
            names = {k: sql.Identifier(*v.split(".")) for k, v in tables.items()}
            statement = self._composed[key] = sql.SQL(query).format(**names).as_bytes()
        return statement

    async def aclose(self) -> None:
        await self._connections.aclose()
