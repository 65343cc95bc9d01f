"""Read-side list queries over the stable read-model views, for the HTTP API and tools.

Every function takes a `ReadModelStore` (PostgreSQL or SQLite) and returns plain
dicts of the same Python values on both (`typed_rows.typed_fetch`). Pages use keyset
cursors (the sort values of the previous page's last row: `SortKey`, `after_keys`),
never OFFSET, so a page costs the same at one million customers as at ten. The
statistics are in `stats_queries`, the search in `search_queries`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple
from uuid import UUID

from consumers.byte_pages import octets
from consumers.readmodel_store import ReadModelStore
from consumers.typed_rows import Row, typed_fetch
from projections.facets import tag_facet

OPEN = ("open", "in_progress")


class SortKey(NamedTuple):
    """One column of a list's order; `kind` says how a cursor spells its value."""

    column: str
    kind: Literal["uuid", "text", "timestamp"]
    nullable: bool = False


QUEUE_ORDER = (SortKey("waiting_since", "timestamp", True), SortKey("conversation_id", "uuid"))
BOARD_ORDER = (
    SortKey("assignee", "text", True),
    SortKey("status", "text"),
    SortKey("due_at", "timestamp", True),
    SortKey("task_id", "uuid"),
)
TIMELINE_ORDER = (SortKey("occurred_at", "timestamp"), SortKey("entry_id", "text"))


FACET_VIEW = {"f": "shared.customer_facets"}
"""The view of the customers' tags and company starts by department (`projections.facets`)."""


def order_by(keys: Sequence[SortKey]) -> str:
    """`ORDER BY` the keys, NULLs last on both databases (SQLite puts them first)."""
    terms = [
        term
        for k in keys
        for term in ((f"{k.column} IS NULL",) if k.nullable else ()) + (k.column,)
    ]
    return " ORDER BY " + ", ".join(terms)


def after_keys(keys: Sequence[SortKey], after: Sequence[Any] | None) -> tuple[str, Row]:
    """A keyset condition (`AND ...`) for the rows after `after` in `order_by(keys)`
    order, and its parameters: a page costs the same at any depth and a list that
    changes between pages neither repeats nor skips the rows that stayed."""
    if after is None:
        return "", {}
    if len(after) != len(keys):
        raise ValueError(f"a cursor of this list has {len(keys)} values, not {len(after)}")
    alternatives = []
    for i, key in enumerate(keys):
        if after[i] is None:  # nothing sorts after a NULL: NULLs are last
            continue
        same = [_same(keys[j], after[j], j) for j in range(i)]
        later = f"{key.column} > %(k{i})s"
        if key.nullable:
            later = f"({later} OR {key.column} IS NULL)"
        alternatives.append("(" + " AND ".join([*same, later]) + ")")
    condition = " OR ".join(alternatives) or "1 = 0"
    return f" AND ({condition})", {f"k{i}": value for i, value in enumerate(after)}


def _same(key: SortKey, value: Any, i: int) -> str:
    return f"{key.column} IS NULL" if value is None else f"{key.column} = %(k{i})s"


def department_customers(
    store: ReadModelStore,
    department: str,
    *,
    tag: str | None = None,
    after: UUID | None = None,
    limit: int = 50,
) -> list[Row]:
    """Non-archived customers a department owns or shares, by id; `after` = the cursor;
    `tag` keeps those with that tag, read from its facet rows in id order
    (`projections.facets`), so a tag few customers have costs a few lookups;
    `email_marketing` is the customer's consent as of the row's values, which the policy
    needs before showing marketing staff an email."""
    driver, source = "m", " FROM {m} m JOIN {c} c ON c.customer_id = m.customer_id"
    if tag is not None:
        driver, source = "f", (
            " FROM {f} f JOIN {m} m ON m.department = f.department"
            " AND m.customer_id = f.customer_id JOIN {c} c ON c.customer_id = f.customer_id"
            " AND f.facet = %(facet)s AND f.department = %(department)s" + past("f", after)
        )  # fmt: skip
    query = (
        "SELECT c.*, m.role" + source + past("c", after)
        + " WHERE m.department = %(department)s" + past("m", after)
        + f" ORDER BY {driver}.customer_id LIMIT %(limit)s"
    )  # fmt: skip
    tables = {"m": "shared.customer_departments", "c": "shared.customers"} | FACET_VIEW
    params = {"department": department, "after": after, "limit": limit}
    facet = None if tag is None else tag_facet(tag)
    return typed_fetch(store, query, tables, params | {"facet": facet}, role="text")


def past(alias: str, after: UUID | None) -> str:
    """`AND <alias>.customer_id > %(after)s` on a page after `after`, for every table of a
    join by customer id, not just the one the page is ordered by. PostgreSQL derives no
    inequality through a join's equality, and for `ORDER BY customer_id LIMIT n` it likes
    a merge join, which would then read the other tables' keys from the first up to the
    cursor: 30-70 ms a page at 100,000 customers, not 1 (`make bench`: `search`)."""
    return "" if after is None else f" AND {alias}.customer_id > %(after)s"


def department_conversations(
    store: ReadModelStore,
    department: str,
    *,
    status: str = "open",
    after: Sequence[Any] | None = None,
    limit: int = 100,
) -> list[Row]:
    """A department's conversation queue: longest waiting first (answered ones last);
    `after` = the `QUEUE_ORDER` values of the previous page's last row."""
    where, keyset = after_keys(QUEUE_ORDER, after)
    query = (
        "SELECT * FROM {v} WHERE department = %(department)s AND status = %(status)s"
        + where + order_by(QUEUE_ORDER) + " LIMIT %(limit)s"
    )  # fmt: skip
    params = {"department": department, "status": status, "limit": limit, **keyset}
    return typed_fetch(store, query, {"v": "support.conversations"}, params)


def department_tasks(
    store: ReadModelStore,
    department: str,
    now: datetime,
    *,
    assignee: str | None = None,
    status: str | None = None,
    after: Sequence[Any] | None = None,
    limit: int = 200,
) -> list[Row]:
    """The task board; `overdue` is computed against `now` here, never stored;
    `after` = the `BOARD_ORDER` values of the previous page's last row."""
    where, keyset = after_keys(BOARD_ORDER, after)
    query = (
        "SELECT * FROM {v} WHERE department = %(department)s"
        + ("" if assignee is None else " AND assignee = %(assignee)s")
        + ("" if status is None else " AND status = %(status)s")
        + where + order_by(BOARD_ORDER) + " LIMIT %(limit)s"
    )  # fmt: skip
    params = {
        "department": department, "assignee": assignee, "status": status, "limit": limit,
        **keyset,
    }  # fmt: skip
    rows = typed_fetch(store, query, {"v": "support.tasks"}, params)
    for row in rows:
        due = row["due_at"]
        row["overdue"] = due is not None and due < now and row["status"] in OPEN
    return rows


def customer_360(store: ReadModelStore, customer_id: UUID) -> Row | None:
    """Profile, owner, departments and orders of one customer (archived ones included)."""
    found = typed_fetch(
        store,
        "SELECT * FROM {c} WHERE customer_id = %(id)s",
        {"c": "shared.customers"},
        {"id": customer_id},
    )
    if not found:
        return None
    orders = typed_fetch(
        store,
        "SELECT * FROM {o} WHERE customer_id = %(id)s ORDER BY ordered_at, order_id",
        {"o": "shared.orders"},
        {"id": customer_id},
    )
    return {**found[0], "orders": orders}


def timeline(
    store: ReadModelStore,
    customer_id: UUID,
    *,
    department: str | None = None,
    after: Sequence[Any] | None = None,
    limit: int = 200,
    max_bytes: int | None = None,
) -> list[Row]:
    """Communication and task events of one customer, oldest first, each with the current
    `department` of its conversation or task; `department` keeps the entries of that
    department's conversations and tasks; `after` = the `TIMELINE_ORDER` values of the
    previous page's last row. With `max_bytes`, the entries stop at the first whose
    `author` and `content` (sealed, as stored) bring the page to `max_bytes`, and each
    entry says how many the page holds up to it (`page_bytes`): an entry may hold a
    message of 64 kB, and the database hands over no more than the page shows."""
    where, keyset = after_keys(TIMELINE_ORDER, after)
    order = order_by(TIMELINE_ORDER)
    source = (
        " FROM {t} t LEFT JOIN {w} w ON w.aggregate_id = t.aggregate_id"
        " WHERE t.customer_id = %(id)s"
        + ("" if department is None else " AND w.department = %(department)s")
        + where
    )  # fmt: skip
    params = {"id": customer_id, "department": department, "limit": limit, **keyset}
    tables = {"t": "shared.timeline", "w": "shared.work_items"}
    if max_bytes is None:
        query = "SELECT t.*, w.department" + source + order + " LIMIT %(limit)s"
        return typed_fetch(store, query, tables, params)
    # the entries' sizes first (no text handed over), then only the entries that fit
    size = f"{octets(store.dialect, 't.author')} + {octets(store.dialect, 't.content')}"
    sizes = f"SELECT t.entry_id AS kept, t.occurred_at, t.entry_id, {size} AS entry_bytes"
    running = (
        f"SELECT kept, entry_bytes, sum(entry_bytes) OVER ({order.strip()} ROWS UNBOUNDED"
        f" PRECEDING) AS page_bytes FROM ({sizes}{source}{order} LIMIT %(limit)s) s"
    )
    query = (
        f"SELECT t.*, w.department, r.page_bytes FROM ({running}) r"
        " JOIN {t} t ON t.customer_id = %(id)s AND t.entry_id = r.kept"
        " LEFT JOIN {w} w ON w.aggregate_id = t.aggregate_id"
        " WHERE r.page_bytes - r.entry_bytes < %(max_bytes)s"
        " ORDER BY " + ", ".join(f"t.{key.column}" for key in TIMELINE_ORDER)
    )  # fmt: skip
    return typed_fetch(store, query, tables, params | {"max_bytes": max_bytes})


def sales_open_tasks(store: ReadModelStore, customer_id: UUID) -> Row:
    """Open follow-ups of a customer in the sales view: count and next due time."""
    query = (
        "SELECT count(*) AS open_tasks, min(due_at) AS next_due_at FROM {t}"
        " WHERE customer_id = %(id)s AND status IN ('open', 'in_progress')"
    )
    found = typed_fetch(
        store, query, {"t": "sales.tasks"}, {"id": customer_id}, next_due_at="timestamp"
    )
    return found[0]
