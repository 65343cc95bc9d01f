"""Department views, statistics and the event stream: read models and the store's log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Router, get
from litestar.params import FromPath, FromQuery, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent

from services.access.rules import DEPARTMENTS
from services.api.deps import CallerDep, ServicesDep
from services.api.events_stream import StreamDep, bounded_sends
from services.api.http_errors import BadRequest
from services.api.list_reads import ListReaderDep
from services.api.problem_table import LIST_PROBLEMS, READ_PROBLEMS, problem_responses
from services.api.reads import MinPosition
from services.api.time_range import From, To, time_range

Granularity = Literal["day", "week", "month"]


FILTERS = {
    "customers": ("tag",),
    "conversations": ("status",),
    "tasks": ("status", "assignee"),
}
"""The filters each department view takes (any other is a 400, not silently ignored)."""


@get("/departments", sync_to_thread=False, responses=problem_responses(400, 401, 403))
def departments(caller: CallerDep, services: ServicesDep) -> dict[str, list[str]]:
    """The departments this deployment knows (`CRM_DEPARTMENTS`, as configured), for
    clients that offer a choice of them (the console's pickers); any valid token."""
    services.access.require(caller.principal, DEPARTMENTS)
    return {"departments": list(services.access.names)}


@get("/departments/{department:str}/{view:str}", responses=LIST_PROBLEMS)
async def department_view(
    *,
    department: FromPath[str],
    view: FromPath[Literal["customers", "conversations", "tasks"]],
    lists: ListReaderDep,
    status: FromQuery[str | None] = None,
    tag: FromQuery[str | None] = None,
    assignee: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """A page of a department's read model (`items`); `next_cursor` fetches the next page.

    customers: owned or shared, by id (`tag`); conversations: the queue, longest waiting
    first (`status`, default open); tasks: the board with `overdue` (`status`, `assignee`).
    """
    given = {"status": status, "tag": tag, "assignee": assignee}
    unsupported = [name for name, value in given.items() if value and name not in FILTERS[view]]
    if unsupported:
        raise BadRequest(f"{view} cannot be filtered by {', '.join(unsupported)}")
    filters = {name: given[name] for name in FILTERS[view]} | {"cursor": cursor, "limit": limit}
    return await lists.department(view, department, min_position, **filters)


@get("/stats/satisfaction", responses=LIST_PROBLEMS)
async def satisfaction(
    *,
    lists: ListReaderDep,
    department: FromQuery[str | None] = None,
    agent: FromQuery[str | None] = None,
    from_: From = None,
    to: To = None,
    granularity: FromQuery[Granularity] = "day",
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """CSAT (% of 4-5 answers) and NPS (% 9-10 minus % 0-6) per period, and the total."""
    start, end = time_range(from_, to)
    filters = {"agent": agent, "start": start, "end": end, "granularity": granularity}
    return await lists.stats("satisfaction", department, min_position, **filters)


@get("/stats/tasks", responses=LIST_PROBLEMS)
async def task_stats(
    *,
    lists: ListReaderDep,
    department: FromQuery[str | None] = None,
    agent: FromQuery[str | None] = None,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Created, completed (on time), on-time rate, reassignments, mean evaluation, mean and
    p90 time to complete, over all time (the read model keeps no time buckets for tasks)."""
    return await lists.stats("task_stats", department, min_position, agent=agent)


@get(
    "/events/stream",
    responses=READ_PROBLEMS | problem_responses(429),
    middleware=[bounded_sends],
)
async def events_stream(
    stream: StreamDep,
    department: FromQuery[str | None] = None,
    after: Annotated[
        int | None, QueryParameter(ge=0, description="resume after this position")
    ] = None,
    last_event_id: Annotated[
        int | None,
        HeaderParameter(
            name="Last-Event-ID",
            ge=0,
            required=False,
            description="what a reconnecting EventSource sends: resume after it (as after=)",
        ),
    ] = None,
) -> ServerSentEvent:
    """Server-sent events of what this principal may see, masked; follows the store's log.
    A principal holds at most `CRM_STREAMS_PER_PRINCIPAL` open at once (429 beyond)."""
    return ServerSentEvent(await stream.follow(department, after, last_event_id))


queries = Router(
    path="/",
    route_handlers=[departments, department_view, satisfaction, task_stats, events_stream],
    tags=["queries"],
)
