"""The read-model queries the API serves: pages, filters, cursors, statistics.

A thin adapter over `consumers.readmodel_queries` (the query functions of the read
models) that shapes their rows into pages `{"items": [...], "next_cursor": ...}` and
says which projections each query reads (`READS`), so `?min_position=N` waits for
exactly those. Masking is not done here: `services.api.reads` applies the policy.

Cursors are opaque to clients. Department customer lists use a keyset cursor (the last
customer id), so a page costs the same at any depth; conversation queues, task boards
and timelines use an offset cursor (the query functions take no keyset yet; these lists
are bounded by a department's open work or one customer's history).
I/O: the read-model store (PostgreSQL or SQLite) through `consumers`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from consumers import readmodel_queries as rq
from consumers.readmodel_store import ReadModelStore
from projections.satisfaction import ALL
from services.api.errors import BadRequest

Row = dict[str, Any]
Page = dict[str, Any]

READS: dict[str, tuple[str, ...]] = {
    "customers": ("shared", "marketing"),
    "conversations": ("support",),
    "tasks": ("support",),
    "timeline": ("shared",),
    "satisfaction": ("stats",),
    "task_stats": ("stats",),
}
"""Which projections each query reads: its read-your-writes wait covers all of them."""


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
        after = _uuid_cursor(cursor)
        rows = rq.department_customers(
            self.store, department, tag=tag, after=after, limit=limit + 1
        )
        more = len(rows) > limit
        return _page(rows[:limit], str(rows[limit - 1]["customer_id"]) if more else None)

    def conversations(
        self, department: str, *, status: str | None, cursor: str | None, limit: int
    ) -> Page:
        offset = _offset_cursor(cursor)
        rows = rq.department_conversations(
            self.store, department, status=status or "open", limit=offset + limit + 1
        )
        return _offset_page(rows, offset, limit)

    def tasks(
        self,
        department: str,
        *,
        status: str | None,
        assignee: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page:
        offset = _offset_cursor(cursor)
        rows = rq.department_tasks(
            self.store, department, self.clock(),
            assignee=assignee, status=status, limit=offset + limit + 1,
        )  # fmt: skip
        return _offset_page(rows, offset, limit)

    def timeline(self, customer_id: UUID, *, cursor: str | None, limit: int) -> Page:
        offset = _offset_cursor(cursor)
        rows = rq.timeline(self.store, customer_id, limit=limit + 1, offset=offset)
        return _page(rows[:limit], str(offset + limit) if len(rows) > limit else None)

    def satisfaction(
        self,
        *,
        department: str | None,
        agent: str | None,
        start: datetime | None,
        end: datetime | None,
        granularity: str,
    ) -> Row:
        """CSAT and NPS per period plus the total over the same range."""
        periods, totals = (
            rq.satisfaction_stats(
                self.store, department=department or ALL, agent=agent or ALL,
                granularity=series, start=start, end=end,
            )
            for series in (granularity, "all")
        )  # fmt: skip
        total = totals[0] if totals else _no_answers()
        return {**_scope(department, agent), "granularity": granularity} | {
            "periods": periods,
            "total": total,
        }

    def task_stats(self, *, department: str | None, agent: str | None) -> Row:
        """Counts, on-time rate, reassignments, mean evaluation and durations (all time)."""
        row = rq.task_stats(self.store, department=department or ALL, assignee=agent or ALL)
        return _scope(department, agent) | {k: v for k, v in row.items() if k != "assignee"}


def _scope(department: str | None, agent: str | None) -> Row:
    return {"department": department or ALL, "agent": agent or ALL}


def _no_answers() -> Row:
    names = ("csat_answers", "csat_positive", "nps_answers", "promoters", "passives", "detractors")
    return dict.fromkeys(names, 0) | {"csat": None, "nps": None}


def _page(items: list[Row], next_cursor: str | None) -> Page:
    return {"items": items, "next_cursor": next_cursor}


def _offset_page(rows: list[Row], offset: int, limit: int) -> Page:
    items = rows[offset : offset + limit]
    return _page(items, str(offset + limit) if len(rows) > offset + limit else None)


def _uuid_cursor(cursor: str | None) -> UUID | None:
    if cursor is None:
        return None
    try:
        return UUID(cursor)
    except ValueError:
        raise BadRequest(f"cursor {cursor[:40]!r} is not one this list gave") from None


def _offset_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 9:
        raise BadRequest(f"cursor {cursor[:40]!r} is not one this list gave")
    return int(cursor)
