"""The read-model queries the API serves: pages, filters, cursors, statistics.

A thin adapter over `consumers.readmodel_queries` (the query functions of the read
models) whose rows `Assembly` makes into pages `{"items": [...], "next_cursor": ...}`, and
says which projections each query reads (`READS`), so `?min_position=N` waits for
exactly those. Masking is not done here: `services.api.list_reads` applies the policy.

Cursors are opaque to clients and are keysets: the last customer id for customer lists,
the sort values of the last row (base64 JSON) for conversation queues, task boards and
timelines. A page costs the same at any depth, and a list that changes between pages
(a queue does) neither repeats nor skips the rows that stayed in it. A cursor sent
back is read by `services.api.cursors`, as hostile input.

A query here reads rows (`Fetched`); which of them its caller may read is the access
model's to say (`services.api.list_reads`), and `Assembly` makes the page of those alone: its
items and its `next_cursor` are the rows kept, and whether one more was kept, never a
row left out (rows are left out that the read model, lagging, still holds: the SQL keeps
only readable ones). A page that left rows out reads on, after the last row read, until
it keeps `limit` + 1 or the list ends, at most `EXTRA_READS` more times.
I/O: the read-model store (PostgreSQL or SQLite) through `consumers`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar
from uuid import UUID

from consumers import readmodel_queries as rq
from consumers import stats_queries
from consumers.readmodel_store import ReadModelStore
from consumers.search_queries import search_customers
from projections import PROJECTIONS
from services.access.findable import Findable
from services.api.cursors import keyset_after, keyset_cursor, spelled, uuid_after
from services.api.http_errors import BadRequest, NotCaughtUp

Row = dict[str, Any]
Page = dict[str, Any]
Fetched = Page
"""What a list query answers: `items`, the rows read, in the list's order; `more`,
whether the list may go on after them; `sizes` (a timeline's), each row's bytes of
messages' text (None: a list without a size bound)."""
T = TypeVar("T")


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
    aggregate each row shows, the kinds of those aggregates, and the list's order (an
    `ORDER BY` of the rows' own columns) if one statement reads them (its query's only
    one: the statement is asked which rows lag, `services.api.awaited_reads`), or None
    (asked by a statement of its own, after)."""

    projection: str
    aggregate: str
    kinds: tuple[str, ...]
    order: str | None


BY_ID = (rq.SortKey("customer_id", "uuid"),)
"""The order of a customer list (department or search)."""
ROWS: dict[str, Rows] = {
    "customers": Rows("shared", "customer_id", ("customer",), rq.order_by(BY_ID)),
    "conversations": Rows(
        "support", "conversation_id", ("conversation",), rq.order_by(rq.QUEUE_ORDER)
    ),
    "tasks": Rows("support", "task_id", ("task",), rq.order_by(rq.BOARD_ORDER)),
    "timeline": Rows(
        "shared", "aggregate_id", ("conversation", "task"), rq.order_by(rq.TIMELINE_ORDER)
    ),
}
"""Of each list (a search's rows are the customers list's): whose rows they are, so a
row whose aggregate has events that projection has not applied is found
(`services.api.loop_reads`) and judged by its state now as well."""
SEARCHED = ROWS["customers"]._replace(order=None)
"""A search's rows, the customers list's: a search may ask a statement before them (a
company start: how many companies it starts, `consumers.search_queries`)."""

TIMELINE_PAGE_BYTES = 1_048_576
"""A timeline page stops at the entry whose author and content (sealed: ~4/3 of their
text) bring its entries shown to 1 MB (`Assembly`), and its `next_cursor` names it. An
entry may hold a message of 64 kB: 500 of them made a page of 32 MB, which took 0.6-0.9 s
to read and open, mostly on the event loop (`crm bench long_reads`). Pages of usual
entries are unchanged."""


class ReadModels:
    """The queries of `services.api.list_reads.ListReader`, over one read-model store. A list
    query reads the `limit` rows after `cursor` (`Fetched`); its page is `Assembly`'s."""

    def __init__(
        self, store: ReadModelStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock

    def customers(
        self, department: str, *, tag: str | None, cursor: str | None, limit: int
    ) -> Fetched:
        after = uuid_after(cursor)
        rows = rq.department_customers(self.store, department, tag=tag, after=after, limit=limit)
        return _fetched(rows, limit)

    def search(
        self,
        *,
        terms: list[str],
        company: str | None,
        tag: str | None,
        findable: Findable,
        cursor: str | None,
        limit: int,
    ) -> Fetched:
        """Customers with every blind-index term (`consumers.search_queries`), of those
        the caller may find (`AccessModel.findable`)."""
        rows = search_customers(
            self.store, terms=terms, company=company, tag=tag, department=findable.department,
            consenting=findable.consenting, after=uuid_after(cursor), limit=limit,
        )  # fmt: skip
        return _fetched(rows, limit)

    def conversations(
        self, department: str, *, status: str | None, cursor: str | None, limit: int
    ) -> Fetched:
        rows = rq.department_conversations(
            self.store, department, status=status or "open",
            after=keyset_after(cursor, rq.QUEUE_ORDER), limit=limit,
        )  # fmt: skip
        return _fetched(rows, limit)

    def tasks(
        self,
        department: str,
        *,
        status: str | None,
        assignee: str | None,
        cursor: str | None,
        limit: int,
    ) -> Fetched:
        rows = rq.department_tasks(
            self.store, department, self.clock(), assignee=assignee, status=status,
            after=keyset_after(cursor, rq.BOARD_ORDER), limit=limit,
        )  # fmt: skip
        return _fetched(rows, limit)

    def timeline(
        self, customer_id: UUID, *, department: str | None, cursor: str | None, limit: int
    ) -> Fetched:
        after = keyset_after(cursor, rq.TIMELINE_ORDER)
        rows = rq.timeline(
            self.store, customer_id, department=department, after=after, limit=limit,
            max_bytes=TIMELINE_PAGE_BYTES,
        )  # fmt: skip
        sizes, total = [], 0
        for row in rows:  # each entry's size, for a page of the rows kept alone
            total, before = int(row.pop("page_bytes")), total
            sizes.append(total - before)
        return _fetched(rows, limit, sizes=sizes, full=total >= TIMELINE_PAGE_BYTES)

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
        periods = stats_queries.satisfaction_stats(
            self.store, **scope, granularity=granularity, start=start, end=end
        )
        if start is None and end is None:
            total = stats_queries.satisfaction_total(periods, **scope)
        else:  # summed from the days in range: one row, with or without answers
            [total] = stats_queries.satisfaction_stats(
                self.store, **scope, granularity="all", start=start, end=end
            )
        return {**scope, "granularity": granularity, "periods": periods, "total": total}

    def task_stats(self, *, department: str | None, agent: str | None) -> Row:
        """Counts, on-time rate, reassignments, mean evaluation and durations (all time)."""
        row = stats_queries.task_stats(
            self.store, department=department or None, assignee=agent or None
        )
        return _scope(department, agent) | {k: v for k, v in row.items() if k != "assignee"}


def _scope(department: str | None, agent: str | None) -> Row:
    """The filters of a statistics query: None (an empty one too) is "all", answered as
    null; an agent named `*` is that agent, never everyone."""
    return {"department": department or None, "agent": agent or None}


def _fetched(
    rows: list[Row], limit: int, *, sizes: list[int] | None = None, full: bool = False
) -> Fetched:
    """One read of a list: its next `limit` rows (fewer: it ended there, unless `full`,
    they stopped at a size bound)."""
    return {"items": rows, "more": full or len(rows) >= limit, "sizes": sizes}


ORDERS: dict[str, Sequence[rq.SortKey]] = {
    "conversations": rq.QUEUE_ORDER,
    "tasks": rq.BOARD_ORDER,
    "timeline": rq.TIMELINE_ORDER,
}
"""The sort keys of each keyset list; a customer list (department or search) is by id."""

EXTRA_READS = 3
"""How many more times a page that left rows out reads on (each query within the read
deadline, `CRM_READ_QUERY_SECONDS`). Rows are left out only while a read model lags
(its SQL keeps only readable rows); past this, the page answers the rows kept so far
(`next_cursor` after the last of them) or, having kept none, 503 `not-caught-up`."""
REREAD_ROWS = 100
"""The fewest rows a read after the first asks for: a page of `?limit=1` meeting a run
of rows left out crosses it in a few reads, not one a row."""


def cursor_of(query: str, row: Row) -> str:
    """The cursor naming `row` of the list `query` (a page's rows: `Assembly`)."""
    keys = ORDERS.get(query)
    if keys is None:
        return str(row["customer_id"])
    return keyset_cursor([spelled(row[key.column]) for key in keys])


class ListBehind(NotCaughtUp):
    """A page read `EXTRA_READS` more times and kept no row: the read model holds that
    many rows its caller may not read (now), which it has not caught up with."""

    def __init__(self, query: str) -> None:
        Exception.__init__(self, f"the {query} read model has not caught up yet")
        self.retry_after = 1.0


@dataclass
class Assembly(Generic[T]):
    """A page of the list `query` made of the rows its caller may read: `take` each
    read's rows, judged (what the page shows of each, `T`, or None: left out), until it
    says the page is done, then `page`. Neither the items nor the `next_cursor` depend
    on a row left out: the cursor names the last row shown, given when a row kept
    follows it (or the page stopped at `TIMELINE_PAGE_BYTES` of the rows kept, or at
    `EXTRA_READS`), so no row left out decides an item, a cursor or a null."""

    query: str
    limit: int
    kept: list[tuple[Row, T]] = field(default_factory=list)
    reads: int = 0
    size: int = 0  # of the rows kept, when the list has a size bound
    cut: bool = False  # stopped with rows kept, before knowing whether more follow

    @property
    def rows(self) -> int:
        """How many rows the next read asks for: one past `limit` (to know whether a
        next page holds any), more when reading on."""
        return self.limit + 1 if not self.reads else max(self.limit + 1, REREAD_ROWS)

    def take(self, fetched: Fetched, judged: Sequence[T | None]) -> str | None:
        """Adds a read's rows the caller may read (`judged`: one for each row read); the
        position to read on after (its last row read: a cursor never answered), or
        None when the page is done."""
        self.reads += 1
        if self._kept(fetched, judged) or not fetched["more"]:
            return None
        if self.kept and self.reads > EXTRA_READS:
            self.cut = True
            return None
        if self.reads > EXTRA_READS:
            raise ListBehind(self.query)
        return cursor_of(self.query, fetched["items"][-1])

    def _kept(self, fetched: Fetched, judged: Sequence[T | None]) -> bool:
        """Keeps the rows judged readable; whether the page is done: a row kept past
        `limit`, or the rows kept reached the size bound."""
        sizes = fetched["sizes"]
        if sizes is None:
            rows = zip(fetched["items"], judged, strict=True)
            self.kept += [(row, shown) for row, shown in rows if shown is not None]
            return len(self.kept) > self.limit
        for row, shown, size in zip(fetched["items"], judged, sizes, strict=True):
            if shown is None:
                continue
            self.kept.append((row, shown))
            self.size += size
            if len(self.kept) > self.limit:
                return True
            if self.size >= TIMELINE_PAGE_BYTES:
                self.cut = True
                return True
        return False

    def page(self) -> tuple[list[T], str | None]:
        """The page's items and its `next_cursor`."""
        shown = self.kept[: self.limit]
        more = len(self.kept) > self.limit or self.cut
        return [item for _, item in shown], cursor_of(self.query, shown[-1][0]) if more else None
