"""The read-model queries the API serves: pages, filters, cursors, statistics.

A thin adapter over `consumers.readmodel_queries` (the query functions of the read
models) that shapes their rows into pages `{"items": [...], "next_cursor": ...}` and
says which projections each query reads (`READS`), so `?min_position=N` waits for
exactly those. Masking is not done here: `services.api.reads` applies the policy.

Cursors are opaque to clients and are keysets: the last customer id for customer lists,
the sort values of the last row (base64 JSON) for conversation queues, task boards and
timelines. A page costs the same at any depth, and a list that changes between pages
(a queue does) neither repeats nor skips the rows that stayed in it. A cursor sent
back is read by `services.api.cursors`, as hostile input.
I/O: the read-model store (PostgreSQL or SQLite) through `consumers`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

from consumers import readmodel_queries as rq
from consumers.readmodel_store import ReadModelStore
from consumers.search_queries import search_customers
from projections import PROJECTIONS
from services.access import Findable
from services.api.cursors import keyset_after, keyset_cursor, spelled, uuid_after
from services.api.errors import BadRequest

Row = dict[str, Any]
Page = dict[str, Any]


def _personal(projection: str, table: str) -> tuple[str, ...]:
    return next(t.personal for t in PROJECTIONS[projection].tables if t.name == table)


PERSONAL: dict[str, tuple[str, ...]] = {
    "customers": _personal("shared", "customers"),
    "conversations": _personal("support", "conversations"),
    "tasks": _personal("support", "tasks"),
    "timeline": _personal("shared", "timeline"),
}
"""The personal columns of each list's rows, as their projection declares them."""

READS: dict[str, tuple[str, ...]] = {
    "customers": ("shared", "marketing"),
    "search": ("shared", "marketing"),
    "conversations": ("support",),
    "tasks": ("support",),
    "timeline": ("shared",),
    "satisfaction": ("stats",),
    "task_stats": ("stats",),
}
"""Which projections each query reads: its read-your-writes wait covers all of them."""


class Rows(NamedTuple):
    """What a list's rows show: the projection that wrote them, the column naming the
    aggregate each row shows, and the kinds of those aggregates."""

    projection: str
    aggregate: str
    kinds: tuple[str, ...]


ROWS: dict[str, Rows] = {
    "customers": Rows("shared", "customer_id", ("customer",)),
    "conversations": Rows("support", "conversation_id", ("conversation",)),
    "tasks": Rows("support", "task_id", ("task",)),
    "timeline": Rows("shared", "aggregate_id", ("conversation", "task")),
}
"""Of each list (a search's rows are the customers list's): whose rows they are, so a
row whose aggregate has events that projection has not applied is found
(`services.api.loop_reads`) and judged by its state now as well."""

TIMELINE_PAGE_BYTES = 1_048_576
"""A timeline page stops at the entry whose author and content (sealed: ~4/3 of their
text) bring it to 1 MB, and its `next_cursor` names the rest. An entry may hold a
message of 64 kB: 500 of them made a page of 32 MB, which took 0.6-0.9 s to read and
open, mostly on the event loop (`crm bench long_reads`). Pages of usual entries are unchanged."""


class ReadModels:
    """The queries of `services.api.reads.Reader`, over one read-model store."""

    def __init__(
        self, store: ReadModelStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock

    def customers(
        self, department: str, *, tag: str | None, cursor: str | None, limit: int
    ) -> Page:
        after = uuid_after(cursor)
        rows = rq.department_customers(
            self.store, department, tag=tag, after=after, limit=limit + 1
        )
        return _customer_page(rows, limit)

    def search(
        self,
        *,
        terms: list[str],
        company: str | None,
        tag: str | None,
        findable: Findable,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """Customers with every blind-index term (`consumers.search_queries`), of those
        the caller may find (`AccessModel.findable`)."""
        rows = search_customers(
            self.store, terms=terms, company=company, tag=tag, department=findable.department,
            consenting=findable.consenting, after=uuid_after(cursor), limit=limit + 1,
        )  # fmt: skip
        return _customer_page(rows, limit)

    def conversations(
        self, department: str, *, status: str | None, cursor: str | None, limit: int
    ) -> Page:
        rows = rq.department_conversations(
            self.store, department, status=status or "open",
            after=keyset_after(cursor, rq.QUEUE_ORDER), limit=limit + 1,
        )  # fmt: skip
        return _keyset_page(rows, limit, rq.QUEUE_ORDER)

    def tasks(
        self,
        department: str,
        *,
        status: str | None,
        assignee: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page:
        rows = rq.department_tasks(
            self.store, department, self.clock(), assignee=assignee, status=status,
            after=keyset_after(cursor, rq.BOARD_ORDER), limit=limit + 1,
        )  # fmt: skip
        return _keyset_page(rows, limit, rq.BOARD_ORDER)

    def timeline(
        self, customer_id: UUID, *, department: str | None, cursor: str | None, limit: int
    ) -> Page:
        after = keyset_after(cursor, rq.TIMELINE_ORDER)
        rows = rq.timeline(
            self.store, customer_id, department=department, after=after, limit=limit + 1,
            max_bytes=TIMELINE_PAGE_BYTES,
        )  # fmt: skip
        full = bool(rows) and rows[-1]["page_bytes"] >= TIMELINE_PAGE_BYTES
        for row in rows:
            del row["page_bytes"]
        return _keyset_page(rows, limit, rq.TIMELINE_ORDER, full=full)

    def satisfaction(
        self,
        *,
        department: str | None,
        agent: str | None,
        start: datetime | None,
        end: datetime | None,
        granularity: str,
    ) -> Row:
        """CSAT and NPS per period plus the total over the same range. Without a range the
        total is the periods' sum: every answer counts in one period of each granularity
        (`projections.stats`), so a query for the all-time row would read the same counters
        (on PostgreSQL an awaited round trip: ~300 -> ~215 us of CPU a read)."""
        if any(t is not None and t.utcoffset() is None for t in (start, end)):
            raise BadRequest("from and to must be RFC 3339 times with a zone")
        scope = _scope(department, agent)
        periods = rq.satisfaction_stats(
            self.store, **scope, granularity=granularity, start=start, end=end
        )
        if start is None and end is None:
            total = rq.satisfaction_total(periods, **scope)
        else:  # summed from the days in range: one row, with or without answers
            [total] = rq.satisfaction_stats(
                self.store, **scope, granularity="all", start=start, end=end
            )
        return {**scope, "granularity": granularity, "periods": periods, "total": total}

    def task_stats(self, *, department: str | None, agent: str | None) -> Row:
        """Counts, on-time rate, reassignments, mean evaluation and durations (all time)."""
        row = rq.task_stats(self.store, department=department or None, assignee=agent or None)
        return _scope(department, agent) | {k: v for k, v in row.items() if k != "assignee"}


def _scope(department: str | None, agent: str | None) -> Row:
    """The filters of a statistics query: None (an empty one too) is "all", answered as
    null; an agent named `*` is that agent, never everyone."""
    return {"department": department or None, "agent": agent or None}


def _page(items: list[Row], next_cursor: str | None) -> Page:
    return {"items": items, "next_cursor": next_cursor}


def _customer_page(rows: list[Row], limit: int) -> Page:
    """The first `limit` customers; the cursor is the last one's id."""
    more = len(rows) > limit
    return _page(rows[:limit], str(rows[limit - 1]["customer_id"]) if more else None)


def _keyset_page(
    rows: list[Row], limit: int, keys: Sequence[rq.SortKey], *, full: bool = False
) -> Page:
    """The first `limit` rows (the query fetched one more to know if a next page exists);
    `full`: the rows stopped short of that at a size bound, so the rest may follow."""
    if len(rows) <= limit and not full:
        return _page(rows, None)
    kept = rows[:limit]
    return _page(kept, keyset_cursor([spelled(kept[-1][key.column]) for key in keys]))
