"""Support read model: the open-conversation queue and the task board.

Rows exist for every department's conversations and tasks (a hand-off moves a row
between departments, it does not recreate it); the queue is `status = 'open'` for a
department, oldest `waiting_since` first. `waiting_since` is the time the customer
started waiting: the opening, or the first inbound message after our last reply;
an outbound reply clears it. Overdue tasks are computed at query time
(`due_at < now()`), so the rows never depend on the wall clock and a rebuild gives
identical rows. Archived customers' rows are deleted, and later events of theirs
ignored (`on_active`), whatever order the topics are replayed in.
Version 2: subjects and titles are kept sealed, as the events carry them.
Version 3: a conversation or task of an erased customer consumed after the erasure is
blanked too (`_erased`), whatever the topics' order.
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain import conversation as conv
from domain import customer as cust
from domain import task as tk
from projections.base import (
    ERASED_TABLE,
    Change,
    DeleteWhere,
    Rows,
    Upsert,
    erase_everywhere,
    table,
)
from projections.dispatch import (
    ARCHIVED_TABLE,
    DispatchProjection,
    archive_marker,
    by_aggregate,
    changed,
    no_rows,
)

TABLES = (
    table(
        "conversations",
        ("conversation_id",),
        "conversation_id:uuid customer_id:uuid channel:text subject:text department:text"
        " agent:text status:text opened_at:timestamp waiting_since:timestamp"
        " last_message_at:timestamp handoffs:int",
        subject="customer_id",
        personal=("subject",),
        indexes=(("department", "status", "waiting_since"), ("customer_id",)),
    ),
    table(
        "tasks",
        ("task_id",),
        "task_id:uuid customer_id:uuid conversation_id:uuid title:text department:text"
        " assignee:text status:text priority:text due_at:timestamp created_at:timestamp"
        " percent:int",
        subject="customer_id",
        personal=("title",),
        indexes=(("department", "assignee", "status"), ("customer_id",)),
    ),
    ARCHIVED_TABLE,
    ERASED_TABLE,
)

support = DispatchProjection("support", 3, TABLES)
on = support.on
on_active = support.on_active
_conversation = by_aggregate("conversations")
_task = by_aggregate("tasks")


def _change(rows: Rows, name: str, e: Any, **values: Any) -> list[Change]:
    row = rows.get(name, (e.originator_id,))
    return [] if row is None else [Upsert(name, changed(row, **values))]


@on(cust.CustomerArchived, keys=no_rows)
def _archived(e: cust.CustomerArchived, rows: Rows) -> list[Change]:
    gone = [DeleteWhere(t.name, "customer_id", e.originator_id) for t in TABLES[:2]]
    return [*gone, archive_marker(e.originator_id)]


@on(cust.CustomerErased, keys=no_rows)
def _erased(e: cust.CustomerErased, rows: Rows) -> list[Change]:
    return erase_everywhere(TABLES, e.originator_id)


@on_active(conv.ConversationOpened, keys=_conversation)
def _opened(e: conv.ConversationOpened, rows: Rows) -> list[Change]:
    row = {
        "conversation_id": e.originator_id, "customer_id": e.customer_id, "channel": e.channel,
        "subject": e.subject, "department": e.department, "agent": e.agent, "status": "open",
        "opened_at": e.occurred_at, "waiting_since": e.occurred_at, "last_message_at": None,
        "handoffs": 0,
    }  # fmt: skip
    return [Upsert("conversations", row)]


@on_active(conv.MessageLogged, keys=_conversation)
def _message(e: conv.MessageLogged, rows: Rows) -> list[Change]:
    row = rows.get("conversations", (e.originator_id,))
    if row is None:
        return []
    waiting = None if e.direction == "outbound" else (row["waiting_since"] or e.sent_at)
    return _change(rows, "conversations", e, waiting_since=waiting, last_message_at=e.sent_at)


@on_active(conv.ConversationHandedOff, keys=_conversation)
def _handed_off(e: conv.ConversationHandedOff, rows: Rows) -> list[Change]:
    row = rows.get("conversations", (e.originator_id,))
    if row is None:
        return []
    return _change(
        rows, "conversations", e,
        department=e.to_department, agent=e.to_agent, handoffs=row["handoffs"] + 1,
    )  # fmt: skip


@on_active(conv.ConversationClosed, keys=_conversation)
def _closed(e: conv.ConversationClosed, rows: Rows) -> list[Change]:
    return _change(rows, "conversations", e, status="closed", waiting_since=None)


@on_active(conv.ConversationReopened, keys=_conversation)
def _reopened(e: conv.ConversationReopened, rows: Rows) -> list[Change]:
    return _change(rows, "conversations", e, status="open", waiting_since=e.occurred_at)


@on_active(tk.TaskCreated, keys=_task)
def _task_created(e: tk.TaskCreated, rows: Rows) -> list[Change]:
    row = {
        "task_id": e.originator_id, "customer_id": e.customer_id,
        "conversation_id": e.conversation_id, "title": e.title, "department": e.department,
        "assignee": e.assignee, "status": "open", "priority": e.priority, "due_at": e.due_at,
        "created_at": e.occurred_at, "percent": 0,
    }  # fmt: skip
    return [Upsert("tasks", row)]


@on_active(tk.TaskAssigned, keys=_task)
def _assigned(e: tk.TaskAssigned, rows: Rows) -> list[Change]:
    return _change(rows, "tasks", e, assignee=e.to_assignee, department=e.department)


@on_active(tk.TaskStarted, keys=_task)
def _started(e: tk.TaskStarted, rows: Rows) -> list[Change]:
    return _change(rows, "tasks", e, status="in_progress")


@on_active(tk.TaskProgressLogged, keys=_task)
def _progress(e: tk.TaskProgressLogged, rows: Rows) -> list[Change]:
    return _change(rows, "tasks", e, percent=e.percent)


@on_active(tk.TaskDueDateChanged, keys=_task)
def _due(e: tk.TaskDueDateChanged, rows: Rows) -> list[Change]:
    return _change(rows, "tasks", e, due_at=e.to_due_at)


@on_active(tk.TaskDetailsChanged, keys=_task)
def _details(e: tk.TaskDetailsChanged, rows: Rows) -> list[Change]:
    values = {f: v for f in ("title", "priority") if (v := getattr(e, f)) is not msgspec.UNSET}
    return _change(rows, "tasks", e, **values)


@on_active(tk.TaskCompleted, keys=_task)
def _completed(e: tk.TaskCompleted, rows: Rows) -> list[Change]:
    return _change(rows, "tasks", e, status="completed", percent=100)


@on_active(tk.TaskCancelled, keys=_task)
def _cancelled(e: tk.TaskCancelled, rows: Rows) -> list[Change]:
    return _change(rows, "tasks", e, status="cancelled")


@on_active(tk.TaskReopened, keys=_task)
def _task_reopened(e: tk.TaskReopened, rows: Rows) -> list[Change]:
    return _change(rows, "tasks", e, status="open")
