"""Customer commands and reads: decode, call the service, encode."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Response, Router, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from domain.base import Context
from domain.customer import Customer
from services.api import schemas as s
from services.api.deps import Call, tagged
from services.api.reads import ReaderDep
from services.api.views import CustomerView, HistoryEntry
from services.commands import CommandResult

Answer = Response[CommandResult]
ID = "/{customer_id:uuid}"
MinPosition = Annotated[
    int | None, QueryParameter(ge=0, description="wait until this position is applied")
]


@post("/", status_code=201)
async def register_customer(data: JSONBody[s.RegisterCustomer], call: Call) -> Answer:
    """Register a customer; `owner_department` defaults to the caller's department."""
    commands = call.services.commands
    return await call.run(
        lambda _: commands.register_customer(call.caller, **data.fields()), data, 201
    )


@patch(ID)
async def update_profile(
    customer_id: FromPath[UUID], data: JSONBody[s.UpdateProfile], call: Call
) -> Answer:
    def decide(c: Customer, ctx: Context) -> None:
        c.update_profile(ctx, **data.fields())

    return await call.change("customer.update", Customer, customer_id, decide, data)


@put(ID + "/owner")
async def change_owner(
    customer_id: FromPath[UUID], data: JSONBody[s.ChangeOwner], call: Call
) -> Answer:
    return await call.change(
        "customer.update",
        Customer,
        customer_id,
        lambda c, ctx: c.change_owner(ctx, department=data.department, agent=data.agent),
        data,
    )


@post(ID + "/shares", status_code=200)
async def share(customer_id: FromPath[UUID], data: JSONBody[s.Share], call: Call) -> Answer:
    return await call.change(
        "customer.share",
        Customer,
        customer_id,
        lambda c, ctx: c.share_with(ctx, data.department),
        data,
    )


@delete(ID + "/shares/{department:str}", status_code=200)
async def unshare(customer_id: FromPath[UUID], department: FromPath[str], call: Call) -> Answer:
    return await call.change(
        "customer.share",
        Customer,
        customer_id,
        lambda c, ctx: c.unshare(ctx, department),
        {"d": department},
    )


@post(ID + "/tags", status_code=200)
async def tag(customer_id: FromPath[UUID], data: JSONBody[s.AddTag], call: Call) -> Answer:
    return await call.change(
        "customer.update", Customer, customer_id, lambda c, ctx: c.tag(ctx, data.tag), data
    )


@delete(ID + "/tags/{tag_name:str}", status_code=200)
async def untag(customer_id: FromPath[UUID], tag_name: FromPath[str], call: Call) -> Answer:
    return await call.change(
        "customer.update",
        Customer,
        customer_id,
        lambda c, ctx: c.untag(ctx, tag_name),
        {"t": tag_name},
    )


@put(ID + "/consents")
async def set_consents(
    customer_id: FromPath[UUID], data: JSONBody[s.SetConsents], call: Call
) -> Answer:
    def decide(c: Customer, ctx: Context) -> None:
        for consent, granted in sorted(data.consents.items()):
            c.set_consent(ctx, consent, granted)

    return await call.change("customer.update", Customer, customer_id, decide, data)


@post(ID + "/orders", status_code=200)
async def record_order(
    customer_id: FromPath[UUID], data: JSONBody[s.RecordOrder], call: Call
) -> Answer:
    return await call.change(
        "customer.order",
        Customer,
        customer_id,
        lambda c, ctx: c.record_order(ctx, **data.fields()),
        data,
    )


@patch(ID + "/orders/{order_id:str}")
async def change_order_status(
    customer_id: FromPath[UUID],
    order_id: FromPath[str],
    data: JSONBody[s.ChangeOrderStatus],
    call: Call,
) -> Answer:
    return await call.change(
        "customer.order",
        Customer,
        customer_id,
        lambda c, ctx: c.change_order_status(ctx, order_id, data.status),
        data,
    )


@delete(ID, status_code=200)
async def archive(
    customer_id: FromPath[UUID], call: Call, reason: FromQuery[str | None] = None
) -> Answer:
    """Soft delete: gone from department views, history kept."""
    return await call.change(
        "customer.archive",
        Customer,
        customer_id,
        lambda c, ctx: c.archive(ctx, reason),
        {"r": reason},
    )


@post(ID + "/erasure", status_code=200)
async def erase(customer_id: FromPath[UUID], data: JSONBody[s.Erase], call: Call) -> Answer:
    """Right to be forgotten (admin): the event, then the customer's key is destroyed."""
    commands = call.services.commands
    return await call.run(
        lambda expected: commands.erase_customer(call.caller, customer_id, expected, data.reason),
        data,
    )


@get(ID, sync_to_thread=True)
def get_customer(
    customer_id: FromPath[UUID],
    reader: ReaderDep,
    as_of: Annotated[datetime | None, QueryParameter(description="RFC 3339 instant")] = None,
    min_position: MinPosition = None,
) -> Response[CustomerView]:
    """Customer 360; with `as_of`, the state at that instant from the event store."""
    return tagged(reader.customer(customer_id, as_of, min_position))


@get(ID + "/timeline", sync_to_thread=True)
def timeline(
    customer_id: FromPath[UUID],
    reader: ReaderDep,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Communication and task events of one customer, oldest first (`items`, `next_cursor`)."""
    return reader.timeline(customer_id, min_position, cursor=cursor, limit=limit)


@get(ID + "/history", sync_to_thread=True)
def customer_history(customer_id: FromPath[UUID], reader: ReaderDep) -> list[HistoryEntry]:
    return reader.history(Customer, customer_id)


customers = Router(
    path="/customers",
    route_handlers=[
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
