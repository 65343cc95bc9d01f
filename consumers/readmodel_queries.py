"""Read-side queries over the stable read-model views, for the HTTP API and tools.

Every function takes a `ReadModelStore` (PostgreSQL or SQLite) and returns plain
dicts of the same Python values on both: each query names its views, and `_fetch`
asks the store for the types the projections declare for their columns (SQLite keeps
UUIDs, times and booleans as text and integers); comma-joined columns (`tags`,
`departments`) become lists. Pages use keyset cursors (the sort values of the previous
page's last row), never OFFSET, so a page costs the same at one million customers as at
ten. Percentages come from `projections.satisfaction`, the one place that defines CSAT
and NPS.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any, Literal, NamedTuple
from uuid import UUID

from consumers.byte_pages import octets
from consumers.readmodel_store import ReadModelStore
from projections import PROJECTIONS
from projections.base import ColumnType
from projections.facets import tag_facet
from projections.satisfaction import ALL, ALL_TIME, bucket_range, csat, nps
from projections.stats import on_time_rate

Row = dict[str, Any]
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
LISTS = ("tags", "departments")
"""Columns that hold a comma-joined list (kept sorted, the owner first)."""


def typed_fetch(
    store: ReadModelStore,
    query: str,
    tables: dict[str, str],
    params: dict[str, Any],
    **computed: ColumnType,
) -> list[Row]:
    """`store.fetch` typed by the views' declared columns plus the `computed` ones."""
    types = {**_column_types(tuple(sorted(tables.values()))), **computed}
    rows = store.fetch(query, tables, params, types)
    if rows:  # a list's columns are those of its first row: the rows of one query
        _listed(rows, [column for column in LISTS if column in rows[0]])
    return rows


@cache
def _column_types(views: tuple[str, ...]) -> dict[str, ColumnType]:
    """Column name -> type over the named views (`projection.table`)."""
    types: dict[str, ColumnType] = {}
    for view in views:
        name, table = view.split(".")
        spec = next(t for t in PROJECTIONS[name].tables if t.name == table)
        for column in spec.columns:
            assert types.setdefault(column.name, column.type) == column.type, column.name
    return types


def _listed(rows: list[Row], columns: list[str]) -> None:
    """Each of `columns` (comma-joined) of each row as its list of items, in place: one
    loop for a page (a function call and a comprehension a row cost ~1/3 of it)."""
    for row in rows:
        for column in columns:
            if isinstance(value := row[column], str):
                items = value.split(",") if value else []
                row[column] = items if "" not in items else [item for item in items if item]


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


def satisfaction_stats(
    store: ReadModelStore,
    *,
    department: str | None = None,
    agent: str | None = None,
    granularity: str = "all",
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Row]:
    """CSAT and NPS per bucket (or one total for `all`), credited as of the interaction.
    None is "all departments" / "all agents", and so is it in the rows answered."""
    series = granularity if granularity != "all" or start or end else "all"
    scope = "day" if series == "all" and (start or end) else series
    buckets = bucket_range(start, end, scope)
    low, high = buckets or (None, None)
    query = (
        "SELECT * FROM {s} WHERE department = %(department)s AND agent = %(agent)s"
        " AND granularity = %(granularity)s"
        + ("" if low is None else " AND bucket >= %(low)s")
        + ("" if high is None else " AND bucket <= %(high)s")
        + ("" if buckets and _selectable(department, agent) else " AND false")
        + " ORDER BY bucket"
    )
    params = {
        "department": _key(department), "agent": _key(agent), "granularity": scope,
        "low": low, "high": high,
    }  # fmt: skip
    rows = typed_fetch(store, query, {"s": "stats.satisfaction"}, params)
    if granularity == "all" and scope != "all":
        return [satisfaction_total(rows, department, agent)]
    return [_with_scores(r | {"department": department, "agent": agent}) for r in rows]


def _key(name: str | None) -> str:
    """The stats key of a filter: `ALL` for None (no filter), else the name itself."""
    return ALL if name is None else name


def _selectable(*names: str | None) -> bool:
    """False if a filter names the `ALL` key itself: no name is `ALL`, so it selects no
    row rather than everyone's counters."""
    return ALL not in names


_COUNTERS = (
    "csat_answers", "csat_positive", "nps_answers", "promoters", "passives", "detractors",
)  # fmt: skip
"""The counters of a satisfaction row, from which its CSAT and NPS are worked out."""
_counters = itemgetter(*_COUNTERS)  # bigint columns: ints from either store


def satisfaction_total(rows: list[Row], department: str | None, agent: str | None) -> Row:
    """The all-time row of `satisfaction_stats` that `rows` (periods of one granularity,
    with or without their scores) add up to."""
    columns = zip(*map(_counters, rows), strict=True) if rows else [()] * len(_COUNTERS)
    total: Row = {
        "department": department, "agent": agent, "granularity": "all", "bucket": ALL_TIME,
    }  # fmt: skip
    return _with_scores(total | {n: sum(c) for n, c in zip(_COUNTERS, columns, strict=True)})


def _with_scores(row: Row) -> Row:
    """`row` (a fetched row, owned by the caller) with its CSAT and NPS."""
    csat_answers, positive, nps_answers, promoters, _, detractors = _counters(row)
    row["csat"] = csat(csat_answers, positive)
    row["nps"] = nps(nps_answers, promoters, detractors)
    return row


def task_stats(
    store: ReadModelStore, *, department: str | None = None, assignee: str | None = None
) -> Row:
    """Created, completed (on time), reassignments, mean evaluation, mean and p90 duration.
    None is "all departments" / "all assignees"; `""` is the tasks nobody is assigned.
    The on-time rate leaves out the tasks that had no due time (`projections.stats`)."""
    found = typed_fetch(
        store,
        "SELECT * FROM {t} WHERE department = %(department)s AND assignee = %(assignee)s"
        + ("" if _selectable(department, assignee) else " AND false"),
        {"t": "stats.tasks"},
        {"department": _key(department), "assignee": _key(assignee)},
    )
    row: Row = (found[0] if found else {}) | {"department": department, "assignee": assignee}
    mean_seconds, p90_seconds = _durations(store, department, assignee)
    evaluations = int(row.get("evaluations") or 0)
    on_time, late = int(row.get("completed_on_time") or 0), int(row.get("completed_late") or 0)
    return {
        **row,
        "on_time_rate": on_time_rate(on_time, late),
        "mean_evaluation": round(int(row["evaluation_sum"]) / evaluations, 2)
        if evaluations
        else None,
        "mean_seconds": mean_seconds,
        "p90_seconds": p90_seconds,
    }


def _durations(
    store: ReadModelStore, department: str | None, assignee: str | None
) -> tuple[float | None, float | None]:
    """The mean and the 90th percentile (`percentile`) of the durations of the tasks a
    filter covers (rows of `task_durations` hold names, never `ALL`: a filter naming it
    matches none), worked out by the database: every duration was read into the API and
    sorted there, which at a million completed tasks held the event loop ~1.1 s a request
    (PostgreSQL; its statement deadline does not bound that). Two queries: how many and
    their mean, then the one at the percentile's rank (the largest of the first so many:
    an observed value, whatever a write between the two removed); past the read
    deadline, cancelled as any list query is. The mean is given to the millisecond: its
    last digits depend on the order PostgreSQL's parallel workers add in."""
    where = (
        " WHERE true"
        + ("" if department is None else " AND department = %(department)s")
        + ("" if assignee is None else " AND assignee = %(assignee)s")
    )
    params = {"department": department, "assignee": assignee}
    tables = {"d": "stats.task_durations"}
    [summary] = typed_fetch(
        store, "SELECT count(*) AS durations, avg(seconds) AS mean FROM {d}" + where, tables,
        params, durations="bigint", mean="float",
    )  # fmt: skip
    count = int(summary["durations"])
    if not count:
        return None, None
    [ranked] = typed_fetch(  # the largest of the first `rank`: one row, if rows went since
        store, "SELECT max(seconds) AS seconds FROM (SELECT seconds FROM {d}" + where
        + " ORDER BY seconds LIMIT %(rank)s) AS lowest", tables,
        params | {"rank": nearest_rank(count, 90)},
    )  # fmt: skip
    return round(summary["mean"], 3), ranked["seconds"]  # the mean's last digits: see above


def nearest_rank(count: int, pct: int) -> int:
    """The 1-based rank of the nearest-rank `pct` percentile among `count` values."""
    return max(1, -(-pct * count // 100))


def percentile(ordered: list[float], pct: int) -> float | None:
    """Nearest-rank percentile of sorted values: deterministic, always an observed value."""
    return ordered[nearest_rank(len(ordered), pct) - 1] if ordered else None
