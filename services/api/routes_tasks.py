"""Task commands and reads: decode, call the service, encode."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, Response, Router, get, patch, post
from litestar.params import FromPath, JSONBody

from domain.task import Task
from services import task_commands as tc
from services.api.deps import Call, tagged
from services.api.problem_table import COMMAND_PROBLEMS, READ_PROBLEMS
from services.api.reads import (
    HISTORY_PAGE,
    HistoryCursor,
    HistoryLimit,
    HistoryPage,
    MinPosition,
    ReaderDep,
)
from services.api.views import HistoryEntry, TaskView
from services.commands import CommandResult

Answer = Response[CommandResult]
ID = "/{task_id:uuid}"


@post("/", status_code=201, responses=COMMAND_PROBLEMS)
async def create_task(data: JSONBody[tc.CreateTask], call: Call) -> Answer:
    """A task in the caller's department; naming an assignee is an assignment."""
    return await call.create(data)


@patch(ID, responses=COMMAND_PROBLEMS)
async def change_task(task_id: FromPath[UUID], data: JSONBody[tc.ChangeTask], call: Call) -> Answer:
    """Change title/description/priority and/or the due time, in one event batch."""
    return await call.change(task_id, data)


@post(ID + "/assignment", status_code=200, responses=COMMAND_PROBLEMS)
async def assign(task_id: FromPath[UUID], data: JSONBody[tc.AssignTask], call: Call) -> Answer:
    """(Re)assign: agents may take a task themselves; managers assign anyone."""
    return await call.change(task_id, data)


@post(ID + "/start", status_code=200, responses=COMMAND_PROBLEMS)
async def start(task_id: FromPath[UUID], call: Call) -> Answer:
    return await call.change(task_id, tc.StartTask())


@post(ID + "/progress", status_code=200, responses=COMMAND_PROBLEMS)
async def progress(task_id: FromPath[UUID], data: JSONBody[tc.LogProgress], call: Call) -> Answer:
    return await call.change(task_id, data)


@post(ID + "/complete", status_code=200, responses=COMMAND_PROBLEMS)
async def complete(task_id: FromPath[UUID], data: JSONBody[tc.CompleteTask], call: Call) -> Answer:
    return await call.change(task_id, data)


@post(ID + "/evaluation", status_code=200, responses=COMMAND_PROBLEMS)
async def evaluate(task_id: FromPath[UUID], data: JSONBody[tc.EvaluateTask], call: Call) -> Answer:
    """Score 1-5 and feedback, by someone other than the assignee."""
    return await call.change(task_id, data)


@post(ID + "/reopen", status_code=200, responses=COMMAND_PROBLEMS)
async def reopen(task_id: FromPath[UUID], data: JSONBody[tc.ReopenTask], call: Call) -> Answer:
    return await call.change(task_id, data)


@post(ID + "/cancel", status_code=200, responses=COMMAND_PROBLEMS)
async def cancel(task_id: FromPath[UUID], data: JSONBody[tc.CancelTask], call: Call) -> Answer:
    return await call.change(task_id, data)


@get(ID, responses=READ_PROBLEMS)
async def get_task(
    task_id: FromPath[UUID], reader: ReaderDep, min_position: MinPosition = None
) -> Response[TaskView]:
    return tagged(await reader.task(task_id, min_position))


@get(ID + "/history", responses=READ_PROBLEMS)
async def task_history(
    request: Request[Any, Any, Any],
    task_id: FromPath[UUID],
    reader: ReaderDep,
    cursor: HistoryCursor = 0,
    limit: HistoryLimit = HISTORY_PAGE,
) -> Response[list[HistoryEntry]]:
    """A task's events with their metadata, oldest first, a page at a time: a `Link`
    header names the next page while there is one."""
    return await reader.history(Task, task_id, HistoryPage.of(request, cursor, limit))


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
