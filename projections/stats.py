"""Statistics: satisfaction (CSAT, NPS) and task performance, as additive counters.

Every row is a set of counters keyed by department, agent (or assignee) and time
bucket, where `ALL` (`projections.satisfaction`: a key no name can be, so an agent
named `*` is not everyone) means "all": a survey answer increments the rows for
(department, agent), (department, ALL), (ALL, agent) and (ALL, ALL) at each granularity
(day, ISO week, month, all time), so any filter is one indexed lookup plus a sum.
Counters are written as increments and never read back, so the runner never loads
them. Survey answers are credited to the department and agent carried in the event
(as of the interaction), never to whoever holds the conversation later.

Each task counts once, by its latest outcome. Its working row (`_tasks`) records what
it contributes now: its outcome (completed, cancelled or none), whether it was on time,
its evaluation, and the department and assignee it was counted under. A reopening takes
back exactly that (negative increments on the same rows); the next completion,
cancellation or evaluation counts afresh, for the assignee of that moment. So reopening
and completing again never counts a task twice, and its evaluation is the one of its
latest completion. `task_durations` holds one row per completed task, from its creation
to its latest completion (keyed by the number of that completion, the row of an earlier
one deleted on reopening). A reassignment is counted for the department of the event
and the assignee the task was taken from. The percentages are computed at query time
from the counters (`on_time_rate` here, CSAT and NPS in `projections.satisfaction`).
"""

from __future__ import annotations

from typing import Any

from domain import conversation as conv
from domain import task as tk
from projections.base import Change, Delete, Increment, Number, Row, Rows, Upsert, table
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
        "task_id:uuid department:text assignee:text created_at:timestamp completions:int"
        " outcome:text on_time:bool score:int counted_department:text counted_assignee:text",
    ),
)

# 2: ALL was `*`, a valid name. 3: a task counts once, by its latest outcome (a reopened
# and completed task counted every completion and evaluation; cancellations the same)
stats = DispatchProjection("stats", 3, TABLES)
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


def on_time_rate(on_time: int, late: int) -> float | None:
    """% of the completed tasks that had a due time which were completed by it; undefined
    without any (a task without a due time is neither on time nor late)."""
    judged = on_time + late
    return None if judged == 0 else round(on_time * 100 / judged, 2)


def _count(department: str, assignee: str | None, deltas: dict[str, int]) -> list[Change]:
    return [
        Increment("tasks", {"department": d, "assignee": a}, dict(deltas))
        for d, a in _combos(department, assignee)
    ]


NOT_COUNTED: Row = {"outcome": None, "on_time": None, "score": None,
                    "counted_department": None, "counted_assignee": None}  # fmt: skip
"""The outcome columns of a task that contributes nothing (open, in progress, reopened)."""


def _contribution(state: Row) -> dict[str, int]:
    """The counters a task adds, as its state row says."""
    if state["outcome"] == "cancelled":
        return {"cancelled": 1}
    if state["outcome"] != "completed":
        return {}
    on_time, score = state["on_time"], state["score"]
    return {
        "completed": 1, "completed_on_time": int(on_time is True),
        "completed_late": int(on_time is False),
        "evaluations": int(score is not None), "evaluation_sum": score or 0,
    }  # fmt: skip


def _place(state: Row) -> tuple[Any, Any]:
    return state["counted_department"], state["counted_assignee"]


def _recounted(before: Row, after: Row) -> list[Change]:
    """Increments that replace what `before` contributed by what `after` does: the net
    difference where both are counted in the same place, else `before` taken back."""
    old, new = _contribution(before), _contribution(after)
    if not old or _place(before) == _place(after):
        net = {name: new.get(name, 0) - old.get(name, 0) for name in old | new}
        return _count(*_place(after), net) if net else []
    taken_back = _count(*_place(before), {name: -delta for name, delta in old.items()})
    return taken_back + (_count(*_place(after), new) if new else [])


def _duration_key(state: Row) -> tuple[Any, ...] | None:
    """The key of the task's row in `task_durations`: only a completed task has one."""
    completed = state["outcome"] == "completed"
    return (state["task_id"], state["completions"]) if completed else None


def _counted(state: Row, **outcome: Any) -> Row:
    """`state` with a new outcome, counted where the task is now."""
    here = {"counted_department": state["department"], "counted_assignee": state["assignee"]}
    return changed(state, **here, **outcome)


def _moved(before: Row, after: Row) -> list[Change]:
    """The task's new state row, the counters that change with it, and the removal of
    the duration row it no longer has (a new completion's row is the caller's)."""
    old = _duration_key(before)
    gone = [] if old in (None, _duration_key(after)) else [Delete("task_durations", old)]
    return [Upsert("_tasks", after), *_recounted(before, after), *gone]


@on(tk.TaskCreated, keys=_task)
def _created(e: tk.TaskCreated, rows: Rows) -> list[Change]:
    state = {"task_id": e.originator_id, "department": e.department, "assignee": e.assignee,
             "created_at": e.occurred_at, "completions": 0, **NOT_COUNTED}  # fmt: skip
    return [Upsert("_tasks", state), *_count(e.department, e.assignee, {"created": 1})]


@on(tk.TaskAssigned, keys=_task)
def _assigned(e: tk.TaskAssigned, rows: Rows) -> list[Change]:
    state = rows.get("_tasks", (e.originator_id,))
    if state is None:
        return []
    moved = changed(state, department=e.department, assignee=e.to_assignee)
    counts = _count(e.department, e.from_assignee, {"reassignments": 1}) if e.from_assignee else []
    return [Upsert("_tasks", moved), *counts]


@on(tk.TaskCompleted, keys=_task)
def _completed(e: tk.TaskCompleted, rows: Rows) -> list[Change]:
    """Counts the task as completed, with a duration from its creation to now."""
    state = rows.get("_tasks", (e.originator_id,))
    if state is None:
        return []
    completion = state["completions"] + 1
    seconds = (e.occurred_at - state["created_at"]).total_seconds()
    duration = {"task_id": e.originator_id, "completion": completion,
                "department": state["department"], "assignee": state["assignee"] or "",
                "seconds": seconds}  # fmt: skip
    after = _counted(
        state, completions=completion, outcome="completed", on_time=e.on_time, score=None
    )
    return [*_moved(state, after), Upsert("task_durations", duration)]


@on(tk.TaskCancelled, keys=_task)
def _cancelled(e: tk.TaskCancelled, rows: Rows) -> list[Change]:
    state = rows.get("_tasks", (e.originator_id,))
    if state is None:
        return []
    return _moved(state, _counted(state, outcome="cancelled", on_time=None, score=None))


@on(tk.TaskReopened, keys=_task)
def _reopened(e: tk.TaskReopened, rows: Rows) -> list[Change]:
    """Takes back what the task's last completion or cancellation counted."""
    state = rows.get("_tasks", (e.originator_id,))
    return [] if state is None else _moved(state, changed(state, **NOT_COUNTED))


@on(tk.TaskEvaluated, keys=_task)
def _evaluated(e: tk.TaskEvaluated, rows: Rows) -> list[Change]:
    """Credits the completion the task counts now (the domain evaluates only those)."""
    state = rows.get("_tasks", (e.originator_id,))
    if state is None or state["outcome"] != "completed":
        return []
    return _moved(state, changed(state, score=e.score))
