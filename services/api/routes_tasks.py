"""Task commands and reads: decode, call the service, encode."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Response, Router, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import UNSET

from domain.base import Context
from domain.task import Task
from services.api import schemas as s
from services.api.deps import Call, tagged
from services.api.reads import ReaderDep
from services.api.views import HistoryEntry, TaskView
from services.commands import CommandResult

Answer = Response[CommandResult]
MinPosition = Annotated[
    int | None, QueryParameter(ge=0, description="wait until this position is applied")
]
ID = "/{task_id:uuid}"
WRITE = "task.write"


@post("/", status_code=201)
async def create_task(data: JSONBody[s.CreateTask], call: Call) -> Answer:
    fields = data.fields()
    customer_id = fields.pop("customer_id")
    commands = call.services.commands
    return await call.run(
        lambda _: commands.create_task(call.caller, customer_id, **fields), data, 201
    )


@patch(ID)
async def change_task(task_id: FromPath[UUID], data: JSONBody[s.PatchTask], call: Call) -> Answer:
    """Change title/description/priority and/or the due time, in one event batch."""

    def decide(task: Task, ctx: Context) -> None:
        details = data.fields()
        due_at = details.pop("due_at", UNSET)
        task.change_details(ctx, **details)
        if due_at is not UNSET:
            task.change_due(ctx, due_at)

    return await call.change(WRITE, Task, task_id, decide, data)


@post(ID + "/assignment", status_code=200)
async def assign(task_id: FromPath[UUID], data: JSONBody[s.Assign], call: Call) -> Answer:
    """(Re)assign: agents may take a task themselves; managers assign anyone."""
    action = "task.assign_self" if data.assignee == call.principal.name else "task.assign"
    return await call.change(
        action, Task, task_id, lambda t, ctx: t.assign(ctx, **data.fields()), data
    )


@post(ID + "/start", status_code=200)
async def start(task_id: FromPath[UUID], call: Call) -> Answer:
    return await call.change(WRITE, Task, task_id, lambda t, ctx: t.start(ctx), {"start": True})


@post(ID + "/progress", status_code=200)
async def progress(task_id: FromPath[UUID], data: JSONBody[s.Progress], call: Call) -> Answer:
    return await call.change(
        WRITE,
        Task,
        task_id,
        lambda t, ctx: t.log_progress(ctx, note=data.note, percent=data.percent),
        data,
    )


@post(ID + "/complete", status_code=200)
async def complete(task_id: FromPath[UUID], data: JSONBody[s.Complete], call: Call) -> Answer:
    return await call.change(
        WRITE, Task, task_id, lambda t, ctx: t.complete(ctx, resolution=data.resolution), data
    )


@post(ID + "/evaluation", status_code=200)
async def evaluate(task_id: FromPath[UUID], data: JSONBody[s.Evaluate], call: Call) -> Answer:
    """Score 1-5 and feedback, by someone other than the assignee."""
    return await call.change(
        "task.evaluate",
        Task,
        task_id,
        lambda t, ctx: t.evaluate(ctx, score=data.score, feedback=data.feedback),
        data,
    )


@post(ID + "/reopen", status_code=200)
async def reopen(task_id: FromPath[UUID], data: JSONBody[s.Reason], call: Call) -> Answer:
    return await call.change(
        WRITE, Task, task_id, lambda t, ctx: t.reopen(ctx, reason=data.reason), data
    )


@post(ID + "/cancel", status_code=200)
async def cancel(task_id: FromPath[UUID], data: JSONBody[s.Reason], call: Call) -> Answer:
    return await call.change(
        WRITE, Task, task_id, lambda t, ctx: t.cancel(ctx, reason=data.reason), data
    )


@get(ID, sync_to_thread=True)
def get_task(
    task_id: FromPath[UUID], reader: ReaderDep, min_position: MinPosition = None
) -> Response[TaskView]:
    return tagged(reader.task(task_id, min_position))


@get(ID + "/history", sync_to_thread=True)
def task_history(task_id: FromPath[UUID], reader: ReaderDep) -> list[HistoryEntry]:
    return reader.history(Task, task_id)


tasks = Router(
    path="/tasks",
    route_handlers=[
        create_task,
        change_task,
        assign,
        start,
        progress,
        complete,
        evaluate,
        reopen,
        cancel,
        get_task,
        task_history,
    ],
    tags=["tasks"],
)
