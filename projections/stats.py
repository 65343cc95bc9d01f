"""Statistics: satisfaction (CSAT, NPS) and task performance, as additive counters.

Every row is a set of counters keyed by department, agent (or assignee) and time
bucket, where `ALL` (`projections.satisfaction`: a key no name can be, so an agent
named `*` is not everyone) means "all": a survey answer increments the rows for
(department, agent), (department, ALL), (ALL, agent) and (ALL, ALL) at each granularity
(day, ISO week, month, all time), so any filter is one indexed lookup plus a sum.
Counters are written as increments and never read back, so the runner never loads
them. Survey answers are credited to the department and agent carried in the event
(as of the interaction), never to whoever holds the conversation later.

Task durations go to `task_durations` (one row per completion) so the p90 time to
complete is recomputed exactly at query time. A reassignment is counted for the
department of the event and the assignee the task was taken from. The percentages
are computed at query time from the counters (`projections.satisfaction`).
"""

from __future__ import annotations

from typing import Any

from domain import conversation as conv
from domain import task as tk
from projections.base import Change, Increment, Number, Rows, Upsert, table
from projections.dispatch import DispatchProjection, by_aggregate, changed, no_rows
from projections.satisfaction import ALL, GRANULARITIES, bucket, is_satisfied, nps_category

TABLES = (
    table(
        "satisfaction",
        ("department", "agent", "granularity", "bucket"),
        "department:text agent:text granularity:text bucket:text csat_answers:bigint"
        " csat_positive:bigint nps_answers:bigint promoters:bigint passives:bigint"
        " detractors:bigint",
    ),
    table(
        "tasks",
        ("department", "assignee"),
        "department:text assignee:text created:bigint completed:bigint"
        " completed_on_time:bigint completed_late:bigint reassignments:bigint"
        " evaluations:bigint evaluation_sum:bigint cancelled:bigint",
    ),
    table(
        "task_durations",
        ("task_id", "completion"),
        "task_id:uuid completion:int department:text assignee:text seconds:float",
        indexes=(("department", "assignee"),),
    ),
    table(
        "_tasks",
        ("task_id",),
        "task_id:uuid department:text assignee:text created_at:timestamp completions:int",
    ),
)

stats = DispatchProjection("stats", 2, TABLES)  # 2: ALL was `*`, a valid name
on = stats.on
_task = by_aggregate("_tasks")


def _combos(department: str, person: str | None) -> list[tuple[str, str]]:
    who = person or ""
    return [(department, who), (department, ALL), (ALL, who), (ALL, ALL)]


def _survey(e: Any, deltas: dict[str, Number]) -> list[Change]:
    buckets = [(g, bucket(e.occurred_at, g)) for g in GRANULARITIES]  # once, not per combo
    return [
        Increment(
            "satisfaction", {"department": d, "agent": a, "granularity": g, "bucket": b}, deltas
        )
        for d, a in _combos(e.department, e.agent)
        for g, b in buckets
    ]


@on(conv.SatisfactionRated, keys=no_rows)
def _csat(e: conv.SatisfactionRated, rows: Rows) -> list[Change]:
    return _survey(e, {"csat_answers": 1, "csat_positive": int(is_satisfied(e.score))})


@on(conv.RecommendationScored, keys=no_rows)
def _nps(e: conv.RecommendationScored, rows: Rows) -> list[Change]:
    category = nps_category(e.score)
    return _survey(
        e,
        {
            "nps_answers": 1,
            "promoters": int(category == "promoter"),
            "passives": int(category == "passive"),
            "detractors": int(category == "detractor"),
        },
    )


def _count(department: str, assignee: str | None, **deltas: int) -> list[Change]:
    return [
        Increment("tasks", {"department": d, "assignee": a}, dict(deltas))
        for d, a in _combos(department, assignee)
    ]


@on(tk.TaskCreated, keys=_task)
def _created(e: tk.TaskCreated, rows: Rows) -> list[Change]:
    state = {"task_id": e.originator_id, "department": e.department, "assignee": e.assignee,
             "created_at": e.occurred_at, "completions": 0}  # fmt: skip
    return [Upsert("_tasks", state), *_count(e.department, e.assignee, created=1)]


@on(tk.TaskAssigned, keys=_task)
def _assigned(e: tk.TaskAssigned, rows: Rows) -> list[Change]:
    state = rows.get("_tasks", (e.originator_id,))
    if state is None:
        return []
    moved = changed(state, department=e.department, assignee=e.to_assignee)
    counts = _count(e.department, e.from_assignee, reassignments=1) if e.from_assignee else []
    return [Upsert("_tasks", moved), *counts]


@on(tk.TaskCompleted, keys=_task)
def _completed(e: tk.TaskCompleted, rows: Rows) -> list[Change]:
    state = rows.get("_tasks", (e.originator_id,))
    if state is None:
        return []
    completion = state["completions"] + 1
    seconds = (e.occurred_at - state["created_at"]).total_seconds()
    duration = {"task_id": e.originator_id, "completion": completion,
                "department": state["department"], "assignee": state["assignee"] or "",
                "seconds": seconds}  # fmt: skip
    counts = _count(
        state["department"], state["assignee"], completed=1,
        completed_on_time=int(e.on_time is True), completed_late=int(e.on_time is False),
    )  # fmt: skip
    return [
        Upsert("_tasks", changed(state, completions=completion)),
        Upsert("task_durations", duration),
        *counts,
    ]


@on(tk.TaskCancelled, keys=_task)
def _cancelled(e: tk.TaskCancelled, rows: Rows) -> list[Change]:
    state = rows.get("_tasks", (e.originator_id,))
    return [] if state is None else _count(state["department"], state["assignee"], cancelled=1)


@on(tk.TaskEvaluated, keys=no_rows)
def _evaluated(e: tk.TaskEvaluated, rows: Rows) -> list[Change]:
    return _count(e.department, e.assignee, evaluations=1, evaluation_sum=e.score)
