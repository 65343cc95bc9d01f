"""The read-model <-> domain oracle: what each row mirroring an aggregate must hold.

For every table whose rows mirror aggregate state, `expected(world)` builds the rows
the aggregates' current state implies (only the mirrored columns), and `mismatches`
lists how the actual rows differ: a wrong value, a missing row, or a row that should
not exist (e.g. an archived customer's). A deterministic projection bug (a handler
that forgets what the domain does) shows here, where a rebuild repeats it.

Personal text of an erased customer's conversations and tasks is not compared: the
read models blank it (crypto-shredding), while the aggregates held in memory by the
test still carry it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from projections.satisfaction import ALL
from tests.unit.projections.world import World

Row = dict[str, Any]
Expected = dict[tuple[str, str], dict[tuple[Any, ...], Row]]
"""(projection, table) -> primary key -> the mirrored columns."""
Rows = Callable[[str, str], list[Row]]
"""The actual rows of (projection, table)."""


def _profile(c: Customer) -> Row:
    return {"name": c.name, "company": c.company, "email": c.email, "phone": c.phone,
            "address": c.address, "owner_department": c.owner_department,
            "owner_agent": c.owner_agent, "order_count": len(c.orders),
            "registered_at": c.created_on}  # fmt: skip


def _customers(world: World) -> Iterator[tuple[str, str, tuple[Any, ...], Row]]:
    for c in world.customers:
        departments = [c.owner_department, *sorted(c.shared_with - {c.owner_department})]
        yield "shared", "customers", (c.id,), _profile(c) | {
            "departments": ",".join(departments), "tags": ",".join(sorted(c.tags)),
            "archived": c.archived, "erased": c.erased,
        }  # fmt: skip
        for order in c.orders.values():
            columns = ("amount", "currency", "status", "ordered_at", "updated_at")
            yield "shared", "orders", (c.id, order.order_id), _of(order, columns)
        if c.archived:
            continue
        yield "sales", "customers", (c.id,), _profile(c) | {
            "shared_with": ",".join(sorted(c.shared_with)),
            "visible": "sales" in (c.owner_department, *c.shared_with),
        }  # fmt: skip
        yield "shared", "customer_departments", (c.owner_department, c.id), {"role": "owner"}
        for department in c.shared_with:
            yield "shared", "customer_departments", (department, c.id), {"role": "shared"}
        consent = c.consents.get("email_marketing", False)
        yield "marketing", "customers", (c.id,), {
            "company": c.company, "owner_department": c.owner_department,
            "email_marketing": consent, "email": c.email if consent else None,
            "registered_at": c.created_on,
        }  # fmt: skip
        for tag in c.tags:
            yield "marketing", "tags", (c.id, tag), {}
        yield from _facets(c, departments)
        for name, granted in c.consents.items():
            yield "marketing", "consents", (c.id, name), {"granted": granted}


def _facets(c: Customer, departments: list[str]) -> Iterator[Any]:
    """A listed customer's tags and (until erased) the starts of its company, by each
    department listing it and `ALL`."""
    company = unicodedata.normalize("NFKC", c.company or "").casefold().strip()
    starts = [] if c.erased else [company[:n] for n in range(1, min(len(company), 3) + 1)]
    for facet in [*(f"t:{tag}" for tag in c.tags), *(f"p:{start}" for start in starts)]:
        for department in (*departments, ALL):
            yield "shared", "customer_facets", (facet, department, c.id), {}


def _tasks(world: World, active: set[UUID], kept: set[UUID]) -> Iterator[Any]:
    for t in world.tasks:
        if t.customer_id not in active:
            continue
        title = {"title": t.title} if t.customer_id in kept else {}
        yield "sales", "tasks", (t.id,), title | _of(t, ("customer_id", "due_at", "status"))
        columns = ("customer_id", "conversation_id", "department", "assignee", "status",
                   "priority", "due_at", "created_at")  # fmt: skip
        yield "support", "tasks", (t.id,), title | _of(t, columns) | {"percent": t.progress}


def _conversations(world: World, active: set[UUID], kept: set[UUID]) -> Iterator[Any]:
    for v in world.conversations:
        if v.customer_id in active:
            subject = {"subject": v.subject} if v.customer_id in kept else {}
            columns = ("customer_id", "channel", "department", "agent", "status", "opened_at")
            values = _of(v, columns) | {"handoffs": v.handoffs}
            yield "support", "conversations", (v.id,), subject | values
        yield from _messages(v, kept)


def _messages(v: Conversation, kept: set[UUID]) -> Iterator[Any]:
    for m in v.messages.values():
        if not m.retracted:
            text = {"content": m.content, "author": m.author} if v.customer_id in kept else {}
            entry = (v.customer_id, f"{v.id}/m/{m.message_id}")
            yield "shared", "timeline", entry, text | {"corrected": m.corrected}


def _of(aggregate: Any, columns: tuple[str, ...]) -> Row:
    return {name: getattr(aggregate, name) for name in columns}


def expected(world: World) -> Expected:
    active = {c.id for c in world.customers if not c.archived}
    kept = {c.id for c in world.customers if not c.erased}
    found: Expected = {}
    for projection, table, key, row in (
        *_customers(world),
        *_tasks(world, active, kept),
        *_conversations(world, active, kept),
    ):
        found.setdefault((projection, table), {})[key] = row
    return found


MIRRORS: dict[tuple[str, str], tuple[str, ...]] = {
    ("sales", "customers"): ("customer_id",), ("sales", "tasks"): ("task_id",),
    ("support", "tasks"): ("task_id",), ("support", "conversations"): ("conversation_id",),
    ("shared", "customers"): ("customer_id",), ("shared", "orders"): ("customer_id", "order_id"),
    ("shared", "customer_departments"): ("department", "customer_id"),
    ("shared", "customer_facets"): ("facet", "department", "customer_id"),
    ("shared", "timeline"): ("customer_id", "entry_id"),
    ("marketing", "customers"): ("customer_id",), ("marketing", "tags"): ("customer_id", "tag"),
    ("marketing", "consents"): ("customer_id", "consent"),
}  # fmt: skip
"""The tables whose rows mirror aggregate state, with their primary keys."""


def mismatches(world: World, rows: Rows) -> list[str]:
    """How the actual rows of this world's customers differ from the expected ones."""
    wanted = expected(world)
    ours = {c.id for c in world.customers}
    problems = []
    for (projection, table), key_columns in MIRRORS.items():
        actual = {
            tuple(row[k] for k in key_columns): row
            for row in rows(projection, table)
            if row["customer_id"] in ours and not _timeline_other(table, row)
        }
        expect = wanted.get((projection, table), {})
        for key in sorted(actual.keys() | expect.keys(), key=repr):
            where = f"{projection}.{table} {key}"
            if key not in actual or key not in expect:
                problems.append(f"{where}: {'missing' if key in expect else 'unexpected'}")
                continue
            for column, value in expect[key].items():
                if actual[key][column] != value:
                    problems.append(f"{where}: {column}={actual[key][column]!r}, not {value!r}")
    return problems


def _timeline_other(table: str, row: Row) -> bool:
    """Timeline entries other than messages and notes mirror no state: not compared."""
    return table == "timeline" and "/m/" not in row["entry_id"]


TASK_OUTCOMES = ("completed", "completed_on_time", "completed_late", "evaluations",
                 "evaluation_sum", "cancelled")  # fmt: skip
"""The counters of `stats.tasks` that a task's current state decides."""


def _outcome(t: Task) -> Row:
    """What a task counts for, by its state: its latest outcome only."""
    if t.status == "cancelled":
        return {"cancelled": 1}
    if t.status != "completed":
        return {}
    return {"completed": 1, "completed_on_time": int(t.on_time is True),
            "completed_late": int(t.on_time is False), "evaluations": int(t.evaluated),
            "evaluation_sum": t.evaluation_score if t.evaluated else 0}  # fmt: skip


def expected_task_stats(world: World) -> dict[tuple[str, str], Row]:
    """`stats.tasks` outcome counters per (department, assignee), "all" rows included; a
    done or cancelled task cannot be reassigned, so its place is where it is now."""
    found: dict[tuple[str, str], Row] = {}
    for t in world.tasks:
        who = t.assignee or ""
        for key in ((t.department, who), (t.department, ALL), (ALL, who), (ALL, ALL)):
            counters = found.setdefault(key, {})
            for name, value in _outcome(t).items():
                counters[name] = counters.get(name, 0) + value
    return found


def stats_mismatches(world: World, rows: Rows) -> list[str]:
    """How `stats` differs from what the tasks' states imply: outcome counters, one
    duration per completed task (creation to latest completion), and the totals of
    created tasks and reassignments. Only for a read model of this world alone."""
    actual = {(r["department"], r["assignee"]): r for r in rows("stats", "tasks")}
    wanted = expected_task_stats(world)
    problems = [
        f"stats.tasks {key}: {name}={actual.get(key, {}).get(name, 0)}, not {value}"
        for key in sorted(actual.keys() | wanted.keys())
        for name in TASK_OUTCOMES
        if (value := wanted.get(key, {}).get(name, 0)) != actual.get(key, {}).get(name, 0)
    ]
    everything = actual.get((ALL, ALL), {})
    totals = {
        "created": len(world.tasks),
        "reassignments": sum(t.reassignments for t in world.tasks),
    }
    problems += [
        f"stats.tasks all: {name}={everything.get(name, 0)}, not {value}"
        for name, value in totals.items()
        if everything.get(name, 0) != value
    ]
    durations = {r["task_id"]: (r["department"], r["assignee"], r["seconds"])
                 for r in rows("stats", "task_durations")}  # fmt: skip
    if durations != _durations(world):
        problems.append(f"stats.task_durations: {durations}, not {_durations(world)}")
    return problems


def _durations(world: World) -> dict[UUID, tuple[str, str, float]]:
    return {
        t.id: (t.department, t.assignee or "", (t.completed_at - t.created_at).total_seconds())
        for t in world.tasks
        if t.status == "completed" and t.completed_at and t.created_at
    }
