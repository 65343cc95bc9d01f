"""Satisfaction (CSAT, NPS) and task statistics, read from the `stats` views.

For the API's statistics and the reports: every function takes a `ReadModelStore`
(PostgreSQL or SQLite) and returns plain dicts (`typed_rows`). Percentages come from
`projections.satisfaction`, the one place that defines CSAT and NPS; a task filter's
mean and 90th percentile duration are worked out by the database (`_durations`).

I/O: the store's queries (one for satisfaction, up to three for task statistics).
"""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter

from consumers.readmodel_store import ReadModelStore
from consumers.typed_rows import Row, typed_fetch
from projections.satisfaction import ALL, ALL_TIME, bucket_range, csat, nps
from projections.stats import on_time_rate


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
