"""Customer commands and reads: decode, call the service, encode."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from domain.customer import Customer
from services import customer_commands as cc
from services.api.deps import Call, tagged
from services.api.list_reads import ListReaderDep
from services.api.problem_table import COMMAND_PROBLEMS, LIST_PROBLEMS, READ_PROBLEMS
from services.api.reads import (
    HISTORY_PAGE,
    HistoryCursor,
    HistoryLimit,
    HistoryPage,
    MinPosition,
    ReaderDep,
)
from services.api.routes_search import search_customers
from services.api.schemas import OrderStatusBody
from services.api.views import CustomerView, HistoryEntry
from services.commands import CommandResult
from services.erasure_command import erase_customer

Answer = Response[CommandResult]
ID = "/{customer_id:uuid}"


@post("/", status_code=201, responses=COMMAND_PROBLEMS)
async def register_customer(data: JSONBody[cc.RegisterCustomer], call: Call) -> Answer:
    """Register a customer; `owner_department` defaults to the caller's department."""
    return await call.create(data)


@patch(ID, responses=COMMAND_PROBLEMS)
async def update_profile(
    customer_id: FromPath[UUID], data: JSONBody[cc.UpdateProfile], call: Call
) -> Answer:
    """Change profile fields; only those given change."""
    return await call.change(customer_id, data)


@put(ID + "/owner", responses=COMMAND_PROBLEMS)
async def change_owner(
    customer_id: FromPath[UUID], data: JSONBody[cc.ChangeOwner], call: Call
) -> Answer:
    """Hand the customer to another department (the owning department, services, admins)."""
    return await call.change(customer_id, data)


@post(ID + "/shares", status_code=200, responses=COMMAND_PROBLEMS)
async def share(
    customer_id: FromPath[UUID], data: JSONBody[cc.ShareCustomer], call: Call
) -> Answer:
    """Share with another department (the owning department decides)."""
    return await call.change(customer_id, data)


@delete(ID + "/shares/{department:str}", status_code=200, responses=COMMAND_PROBLEMS)
async def unshare(customer_id: FromPath[UUID], department: FromPath[str], call: Call) -> Answer:
    return await call.change(customer_id, cc.UnshareCustomer(department=department))


@post(ID + "/tags", status_code=200, responses=COMMAND_PROBLEMS)
async def tag(customer_id: FromPath[UUID], data: JSONBody[cc.TagCustomer], call: Call) -> Answer:
    return await call.change(customer_id, data)


@delete(ID + "/tags/{tag_name:str}", status_code=200, responses=COMMAND_PROBLEMS)
async def untag(customer_id: FromPath[UUID], tag_name: FromPath[str], call: Call) -> Answer:
    return await call.change(customer_id, cc.UntagCustomer(tag=tag_name))


@put(ID + "/consents", responses=COMMAND_PROBLEMS)
async def set_consents(
    customer_id: FromPath[UUID], data: JSONBody[cc.SetConsents], call: Call
) -> Answer:
    """Grant or withdraw consents; a change may not widen what its own caller sees."""
    return await call.change(customer_id, data)


@post(ID + "/orders", status_code=200, responses=COMMAND_PROBLEMS)
async def record_order(
    customer_id: FromPath[UUID], data: JSONBody[cc.RecordOrder], call: Call
) -> Answer:
    return await call.change(customer_id, data)


@patch(ID + "/orders/{order_id:str}", responses=COMMAND_PROBLEMS)
async def change_order_status(
    customer_id: FromPath[UUID],
    order_id: FromPath[str],
    data: JSONBody[OrderStatusBody],
    call: Call,
) -> Answer:
    command = cc.ChangeOrderStatus(order_id=order_id, status=data.status)
    return await call.change(customer_id, command)


@delete(ID, status_code=200, responses=COMMAND_PROBLEMS)
async def archive(
    customer_id: FromPath[UUID], call: Call, reason: FromQuery[str | None] = None
) -> Answer:
    """Soft delete by the owning department: gone from department views, history kept.
    The `reason` is personal data (sealed, readable as the customer's name is)."""
    return await call.change(customer_id, cc.ArchiveCustomer(reason=reason))


@post(ID + "/erasure", status_code=200, responses=COMMAND_PROBLEMS)
async def erase(
    customer_id: FromPath[UUID], data: JSONBody[cc.EraseCustomer], call: Call
) -> Answer:
    """Right to be forgotten (admin): the event, then the customer's key is destroyed.
    The `reason` is personal data sealed with that key: it reads as `[erased]` at once
    (who erased the customer and when stay readable in the history)."""
    commands = call.services.commands
    return await call.run(
        lambda expected: erase_customer(commands, call.caller, customer_id, data, expected),
        data,
        target=customer_id,
    )


@get(ID, responses=READ_PROBLEMS)
async def get_customer(
    customer_id: FromPath[UUID],
    reader: ReaderDep,
    as_of: Annotated[datetime | None, QueryParameter(description="RFC 3339 instant")] = None,
    min_position: MinPosition = None,
) -> Response[CustomerView]:
    """Customer 360; with `as_of`, the state at that instant from the event store."""
    return tagged(await reader.customer(customer_id, as_of, min_position))


@get(ID + "/timeline", responses=LIST_PROBLEMS)
async def timeline(
    customer_id: FromPath[UUID],
    lists: ListReaderDep,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Communication and task events of one customer, oldest first (`items`, `next_cursor`).
    A page stops at `limit` entries or at the entry that brings its messages' text to
    1 MB, whichever comes first: follow `next_cursor` until it is null."""
    return await lists.timeline(customer_id, min_position, cursor=cursor, limit=limit)


@get(ID + "/history", responses=READ_PROBLEMS)
async def customer_history(
    request: Request[Any, Any, Any],
    customer_id: FromPath[UUID],
    reader: ReaderDep,
    cursor: HistoryCursor = 0,
    limit: HistoryLimit = HISTORY_PAGE,
) -> Response[list[HistoryEntry]]:
    """A customer's events with their metadata, oldest first, a page at a time: a `Link`
    header names the next page while there is one."""
    return await reader.history(Customer, customer_id, HistoryPage.of(request, cursor, limit))


customers = Router(
    path="/customers",
    route_handlers=[
        search_customers,
        register_customer,
        update_profile,
        change_owner,
        share,
        unshare,
        tag,
        untag,
        set_consents,
        record_order,
        change_order_status,
        archive,
        erase,
        get_customer,
        timeline,
        customer_history,
    ],
    tags=["customers"],
)
