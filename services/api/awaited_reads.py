"""Read-model queries awaited on the API's event loop (PostgreSQL), and which rows of a
list's page lag behind the event store.

`services.pg_reads` awaits every query on the loop. Read-model queries
(`services.api.read_models.ReadModels` over `consumers.readmodel_queries`) are plain
synchronous functions calling `store.fetch`; `AwaitedReadModels` runs them unchanged
against a stand-in store that answers each `fetch` from rows already awaited, and
otherwise stops the function (`_Needed`) so the driver can await that query and run it
again. A query function costs a few microseconds of Python; a department page or a
statistic makes one or two queries, so it runs two or three times for one round trip
each, and no query function had to be written twice.

A list's page also says which of its rows show an aggregate with stored events their
projection has not applied (`behind`), so that the access model judges those by the
aggregate's state now as well: normally none, but every change since while a consumer
is down. Each projection stores, with its rows, the last version it applied of each
aggregate (`_applied`, in its live generation's schema, named once and kept), and the
event store is in the same database: an aggregate is behind when the store holds a
version above it (one index probe of each table a row). The list's own statement asks
it of every row it reads (`_folded`: the list's query wrapped, in its order), so a row
and the version it was applied at come from one snapshot and one generation: a rebuild's
switch drops the old generation's schema in the transaction that points the views at
the new one, so a statement naming the old one fails (`ReadModelNotBuilt`) and is asked
again of the generation live now. (Asked by a statement of its own after the page's, it
cost a round trip, ~5 % of a 50-row page's instructions, and a version applied between
the two was taken for the row's.) A search may ask a statement before its rows' (how
many companies a start begins: `consumers.search_queries`), so its rows are still asked
about by a statement of their own (`_UNAPPLIED`, `Rows.order` None).
I/O: PostgreSQL, through the `PostgresReads` it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from uuid import UUID

from consumers.key_stores import uuid_array
from consumers.readmodel_store import ReadModelNotBuilt
from projections.base import ColumnType
from services.api.query_turns import QueryTurns
from services.api.read_models import Page, ReadModels, Rows
from services.pg_read_connections import LIST_SHARE_EACH, QUERY_SECONDS
from services.pg_reads import PostgresReads

T = TypeVar("T")
Row = dict[str, Any]
BEHIND = "_behind"
"""The column `_folded` adds to a list's rows (no projection's column starts with `_`)."""


class AwaitedReadModels:
    """Read models whose queries are awaited (PostgreSQL through `PostgresReads`)."""

    def __init__(
        self,
        reads: PostgresReads,
        models: ReadModels,
        events: str,
        query_seconds: float = QUERY_SECONDS,
    ) -> None:
        self._reads = reads
        self._models = models
        self._events = events  # the event store's table, "schema.table"
        self._generations: dict[str, int] = {}
        self._turns = QueryTurns(LIST_SHARE_EACH, query_seconds)

    async def run(self, query: Callable[[ReadModels], T], principal: str) -> T:
        return await self._run(query, principal, None)

    async def behind(
        self, query: Callable[[ReadModels], Page], rows: Rows | None, principal: str
    ) -> tuple[Page, set[UUID]]:
        """`query`'s page, and which of its rows lag, asked of the live generation of
        `rows.projection` (kept: asked again once if a switch dropped it since)."""
        if rows is None:
            return await self.run(query, principal), set()
        cached = self._generations.get(rows.projection)
        generation = cached or await self._generation(rows.projection, principal)
        try:
            if generation is None:  # no generation live: nothing says what each row applied
                page = await self.run(query, principal)
                return page, {row[rows.aggregate] for row in page["items"]}
            page, behind = await self._behind(query, rows, generation, principal)
        except ReadModelNotBuilt:
            if cached is None:  # the generation just read: the read model's own absence
                raise
            self._generations.pop(rows.projection, None)  # switched since
            return await self.behind(query, rows, principal)
        self._generations[rows.projection] = generation
        return page, behind

    async def _behind(
        self, query: Callable[[ReadModels], Page], rows: Rows, generation: int, principal: str
    ) -> tuple[Page, set[UUID]]:
        """`behind`, of `generation`: asked by the list's statement (`_folded`), or by one
        of its own after the page's statements (`_UNAPPLIED`) for a list whose query may
        ask another statement first (`Rows.order` None)."""
        applied = {"_applied": f"{rows.projection}_v{generation}._applied"}
        tables = applied | {"_events": self._events}
        if rows.order is not None:
            fold = _Fold(rows.aggregate, rows.order, tables)
            return await self._run(query, principal, fold), fold.behind
        page = await self.run(query, principal)
        shown = {row[rows.aggregate] for row in page["items"]}
        if not shown:
            return page, set()
        found = await self._fetch(principal, _UNAPPLIED, tables, {"ids": uuid_array(shown)})
        return page, {row["id"] for row in found}

    async def _run(self, query: Callable[[ReadModels], T], principal: str, fold: _Fold | None) -> T:
        """`query` run until every statement it asks is answered (see the module);
        with `fold`, its one statement is asked folded."""
        answers: list[list[Row]] = []
        served: list[bool] = []
        while True:
            replay = _Replay(answers, served)
            try:
                return query(ReadModels(replay, self._models.clock))  # type: ignore[arg-type]
            except _Needed as needed:
                if fold is None:
                    answers.append(await self._fetch(principal, *needed.request))
                else:
                    answers.append(fold.took(await self._fetch(principal, *fold.asked(needed))))
                served.append(False)

    async def _fetch(
        self,
        principal: str,
        query: str,
        tables: dict[str, str],
        params: dict[str, Any],
        types: Mapping[str, ColumnType] | None = None,
    ) -> list[Row]:
        """`PostgresReads.fetch` in one of `principal`'s turns, which takes its places."""
        async with self._turns.turn(principal) as turn:
            return await self._reads.fetch(query, tables, params, types, turn.take)

    async def _generation(self, projection: str, principal: str) -> int | None:
        found = await self._fetch(principal, _GENERATION, {}, {"name": projection})
        return found[0]["live_generation"] if found else None

    async def aclose(self) -> None:
        """Nothing of its own: the `PostgresReads` it awaits is closed by its owner."""


_GENERATION = "SELECT live_generation FROM crm_projections WHERE name = %(name)s"
_UNAPPLIED = (
    "SELECT w.id FROM unnest(%(ids)s::uuid[]) AS w(id)"
    " LEFT JOIN {_applied} a ON a.aggregate_id = w.id"
    " WHERE EXISTS (SELECT FROM {_events} e WHERE e.originator_id = w.id"
    " AND e.originator_version > coalesce(a.version, 0))"
)


def _folded(query: str, aggregate: str, order: str) -> str:
    """`query` (a list's statement) with a last column, `BEHIND`, saying whether the
    event store (`{_events}`) holds a version of the row's `aggregate` above the one
    its projection applied (`{_applied}`), in the list's `order` (of the rows' own
    columns: the rows come as the list's statement orders them)."""
    aggregate = "p." + aggregate  # a column's name (`ROWS`), never a caller's text
    return (
        "SELECT p.*, EXISTS (SELECT FROM {_events} e WHERE e.originator_id = " + aggregate
        + " AND e.originator_version > coalesce((SELECT a.version FROM {_applied} a"
        " WHERE a.aggregate_id = " + aggregate + "), 0)) AS " + BEHIND
        + " FROM (" + query + ") p" + order
    )  # fmt: skip


class _Fold:
    """A list's statement asked folded (`_folded`), and the aggregates it found behind."""

    def __init__(self, aggregate: str, order: str, tables: dict[str, str]) -> None:
        self._aggregate, self._order, self._tables = aggregate, order, tables
        self._asked = False
        self.behind: set[UUID] = set()

    def asked(self, needed: _Needed) -> tuple[Any, ...]:
        """The statement a list's query asked (its only one: `Rows.order`), folded."""
        assert not self._asked, "a list folded reads its rows with one statement"
        self._asked = True
        query, tables, *rest = needed.request
        return (_folded(query, self._aggregate, self._order), tables | self._tables, *rest)

    def took(self, rows: list[Row]) -> list[Row]:
        """`rows` as the list's statement reads them (their `BEHIND` taken out), noting
        the aggregates behind."""
        aggregate = self._aggregate
        self.behind = {row[aggregate] for row in rows if row.pop(BEHIND)}
        return rows


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
