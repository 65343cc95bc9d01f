"""Sales read model: customers owned by or shared with sales, ready for an account list.

`customers` keeps a row for every non-archived customer, with `visible` true when
sales owns it or it is shared with sales: a customer that becomes shared later then
shows up with its full history (orders, contacts) instead of starting empty. Queries
filter on `visible`. Archived customers are deleted. Everything fed by conversations
and tasks lives in its own rows (`activity`, `tasks`) rather than in `customers`:
Kafka orders events per aggregate only, so a value that depended on whether a task
event arrived before or after its customer's registration would differ between
replays. Open tasks and the next due task are computed from `tasks` at query time.
Private tables (leading `_`) are working state, not exposed in the stable schema.
Version 2: a new owner leaves `shared_with` (version 1 kept it there, so rows of
customers that moved to a department they were shared with need a rebuild).
Version 3: personal columns hold the sealed values of the events (`enc:v1:...`), never
plaintext; the API opens them for callers allowed to see them.
Version 4: a task of an erased customer consumed after the erasure is blanked too
(`_erased`), so its title is `[erased]` whatever the topics' order.
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain import conversation as conv
from domain import customer as cust
from domain import task as tk
from projections.base import (
    ERASED_CUSTOMERS,
    ERASED_TABLE,
    Change,
    Delete,
    DeleteWhere,
    Increment,
    Rows,
    Upsert,
    table,
)
from projections.base import erase_everywhere as _erase
from projections.dispatch import (
    ARCHIVED,
    ARCHIVED_TABLE,
    DispatchProjection,
    archive_marker,
    by_aggregate,
    by_customer,
    changed,
    customer_of,
)

DEPARTMENT = "sales"

TABLES = (
    table(
        "customers",
        ("customer_id",),
        "customer_id:uuid name:text company:text email:text phone:text address:text"
        " owner_department:text owner_agent:text shared_with:text visible:bool"
        " order_count:int registered_at:timestamp",
        subject="customer_id",
        personal=("name", "email", "phone", "address"),
        indexes=(("visible", "customer_id"),),
    ),
    table(
        "order_totals",
        ("customer_id", "currency"),
        "customer_id:uuid currency:text orders:int total:numeric",
    ),
    table(
        "tasks",
        ("task_id",),
        "task_id:uuid customer_id:uuid title:text due_at:timestamp status:text",
        subject="customer_id",
        personal=("title",),
        indexes=(("customer_id", "due_at"),),
    ),
    table(
        "activity",
        ("customer_id",),
        "customer_id:uuid last_contact_at:timestamp last_contact_channel:text"
        " csat_score:int csat_at:timestamp nps_score:int nps_at:timestamp",
    ),
    table(
        "_conversations",
        ("conversation_id",),
        "conversation_id:uuid customer_id:uuid channel:text",
        indexes=(("customer_id",),),
    ),
    ARCHIVED_TABLE,
    ERASED_TABLE,
)

sales = DispatchProjection("sales", 4, TABLES)
on = sales.on
on_active = sales.on_active


def _shared(row: dict[str, Any]) -> list[str]:
    return [d for d in (row["shared_with"] or "").split(",") if d]


def _visibility(row: dict[str, Any]) -> dict[str, Any]:
    row["visible"] = row["owner_department"] == DEPARTMENT or DEPARTMENT in _shared(row)
    return row


@on(cust.CustomerRegistered, keys=by_customer("customers"))
def _registered(e: cust.CustomerRegistered, rows: Rows) -> list[Change]:
    row = {
        "customer_id": e.originator_id, "name": e.name, "company": e.company,
        "email": e.email, "phone": e.phone, "address": e.address,
        "owner_department": e.owner_department, "owner_agent": e.owner_agent,
        "shared_with": "", "visible": False, "order_count": 0, "registered_at": e.occurred_at,
    }  # fmt: skip
    return [Upsert("customers", _visibility(row))]


def _update(rows: Rows, e: Any, **values: Any) -> list[Change]:
    row = rows.get("customers", (customer_of(e),))
    return [] if row is None else [Upsert("customers", _visibility(changed(row, **values)))]


@on(cust.CustomerProfileUpdated, keys=by_customer("customers"))
def _profile(e: cust.CustomerProfileUpdated, rows: Rows) -> list[Change]:
    fields = ("name", "company", "email", "phone", "address")
    return _update(rows, e, **{f: v for f in fields if (v := getattr(e, f)) is not msgspec.UNSET})


@on(cust.CustomerOwnerChanged, keys=by_customer("customers"))
def _owner(e: cust.CustomerOwnerChanged, rows: Rows) -> list[Change]:
    """The new owner leaves `shared_with`, as in the domain (`Customer._owner_changed`)."""
    row = rows.get("customers", (e.originator_id,))
    if row is None:
        return []
    shared = ",".join(d for d in _shared(row) if d != e.to_department)
    return _update(
        rows, e, owner_department=e.to_department, owner_agent=e.to_agent, shared_with=shared
    )


@on(cust.CustomerShared, cust.CustomerUnshared, keys=by_customer("customers"))
def _sharing(e: cust.CustomerShared | cust.CustomerUnshared, rows: Rows) -> list[Change]:
    row = rows.get("customers", (e.originator_id,))
    if row is None:
        return []
    departments = set(_shared(row)) - {e.department}
    if isinstance(e, cust.CustomerShared):
        departments.add(e.department)
    return _update(rows, e, shared_with=",".join(sorted(departments)))


@on(cust.OrderRecorded, keys=by_customer("customers"))
def _order(e: cust.OrderRecorded, rows: Rows) -> list[Change]:
    row = rows.get("customers", (e.originator_id,))
    if row is None:
        return []
    key = {"customer_id": e.originator_id, "currency": e.currency}
    return [
        *_update(rows, e, order_count=row["order_count"] + 1),
        Increment("order_totals", key, {"orders": 1, "total": e.amount}),
    ]


@on(cust.CustomerArchived, keys=by_customer("customers"))
def _archived(e: cust.CustomerArchived, rows: Rows) -> list[Change]:
    kept = ("customers", "activity", ARCHIVED, ERASED_CUSTOMERS)
    gone = [
        DeleteWhere(t.name, "customer_id", e.originator_id) for t in TABLES if t.name not in kept
    ]
    return [
        Delete("customers", (e.originator_id,)),
        Delete("activity", (e.originator_id,)),
        *gone,
        archive_marker(e.originator_id),
    ]


@on(cust.CustomerErased, keys=by_customer("customers"))
def _erased(e: cust.CustomerErased, rows: Rows) -> list[Change]:
    return _erase(TABLES, e.originator_id)


_conversation = by_aggregate("_conversations", "activity")


@on_active(conv.ConversationOpened, keys=_conversation)
def _opened(e: conv.ConversationOpened, rows: Rows) -> list[Change]:
    row = {"conversation_id": e.originator_id, "customer_id": e.customer_id, "channel": e.channel}
    return [Upsert("_conversations", row), *_contact(rows, e, e.occurred_at, e.channel)]


@on_active(conv.MessageLogged, keys=_conversation)
def _message(e: conv.MessageLogged, rows: Rows) -> list[Change]:
    conversation = rows.get("_conversations", (e.originator_id,))
    channel = None if conversation is None else conversation["channel"]
    return _contact(rows, e, e.sent_at, channel)


def _activity(rows: Rows, e: Any) -> dict[str, Any]:
    row = rows.get("activity", (e.customer_id,))
    if row is not None:
        return row
    names = ("last_contact_at", "last_contact_channel", "csat_score", "csat_at", "nps_score")
    return {"customer_id": e.customer_id, "nps_at": None, **dict.fromkeys(names)}


def _latest(rows: Rows, e: Any, at: Any, value: Any, fields: tuple[str, str]) -> list[Change]:
    """Keep the newest value; ties go to the larger value, so arrival order never matters."""
    row = _activity(rows, e)
    time_field, value_field = fields
    old = row[time_field]
    if old is not None and (old, str(row[value_field])) >= (at, str(value)):
        return []
    return [Upsert("activity", changed(row, **{time_field: at, value_field: value}))]


def _contact(rows: Rows, e: Any, at: Any, channel: str | None) -> list[Change]:
    return _latest(rows, e, at, channel, ("last_contact_at", "last_contact_channel"))


@on_active(conv.SatisfactionRated, keys=by_customer("activity"))
def _csat(e: conv.SatisfactionRated, rows: Rows) -> list[Change]:
    return _latest(rows, e, e.occurred_at, e.score, ("csat_at", "csat_score"))


@on_active(conv.RecommendationScored, keys=by_customer("activity"))
def _nps(e: conv.RecommendationScored, rows: Rows) -> list[Change]:
    return _latest(rows, e, e.occurred_at, e.score, ("nps_at", "nps_score"))


_task = by_aggregate("tasks")


@on_active(tk.TaskCreated, keys=_task)
def _task_created(e: tk.TaskCreated, rows: Rows) -> list[Change]:
    task = {"task_id": e.originator_id, "customer_id": e.customer_id, "title": e.title,
            "due_at": e.due_at, "status": "open"}  # fmt: skip
    return [Upsert("tasks", task)]


def _task_change(e: Any, rows: Rows, **values: Any) -> list[Change]:
    task = rows.get("tasks", (e.originator_id,))
    return [] if task is None else [Upsert("tasks", changed(task, **values))]


@on_active(tk.TaskStarted, keys=_task)
def _task_started(e: tk.TaskStarted, rows: Rows) -> list[Change]:
    return _task_change(e, rows, status="in_progress")


@on_active(tk.TaskDueDateChanged, keys=_task)
def _task_due(e: tk.TaskDueDateChanged, rows: Rows) -> list[Change]:
    return _task_change(e, rows, due_at=e.to_due_at)


@on_active(tk.TaskDetailsChanged, keys=_task)
def _task_details(e: tk.TaskDetailsChanged, rows: Rows) -> list[Change]:
    return [] if e.title is msgspec.UNSET else _task_change(e, rows, title=e.title)


@on_active(tk.TaskCompleted, keys=_task)
def _task_completed(e: tk.TaskCompleted, rows: Rows) -> list[Change]:
    return _task_change(e, rows, status="completed")


@on_active(tk.TaskCancelled, keys=_task)
def _task_cancelled(e: tk.TaskCancelled, rows: Rows) -> list[Change]:
    return _task_change(e, rows, status="cancelled")


@on_active(tk.TaskReopened, keys=_task)
def _task_reopened(e: tk.TaskReopened, rows: Rows) -> list[Change]:
    return _task_change(e, rows, status="open")
