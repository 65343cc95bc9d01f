"""`domain.snapshot`: an aggregate's state written down and read back is the same state,
private attributes and the order of its collections included, for every customer,
conversation and task a realistic workload makes (the aggregates' machines check it for
random histories, at the middle of each); each state struct names every attribute; a
tag changes with its shape."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest

from bench.workload import Workload
from domain import snapshot as snapshots
from domain.base import ERASED, Aggregate, DomainEvent
from domain.conversation import Conversation
from domain.customer import Customer
from domain.customer_orders import Order
from domain.snapshot import STATES, TAGS, CustomerState, restored, snapshot, tag_of
from domain.task import Task
from tests.unit.domain.factories import ctx, exactly


@pytest.mark.parametrize("kind", [Customer, Conversation, Task])
def test_each_state_struct_names_every_attribute_of_its_aggregate(kind: type[Aggregate]) -> None:
    attributes = {name.lstrip("_") for name in vars(kind.blank(uuid4()))} - {"pending"}
    assert set(STATES[kind].__struct_fields__) == attributes


def test_every_aggregate_of_a_workload_reads_back_as_it_was_written() -> None:
    streams: dict[UUID, list[DomainEvent]] = defaultdict(list)
    for event in Workload(seed=7).events(3000):
        streams[event.originator_id].append(event)
    kinds: set[type[Aggregate]] = set()
    for events in streams.values():
        aggregate: Aggregate | None = None
        for event in events:
            aggregate = event.mutate(aggregate)
            again = restored(type(aggregate), snapshot(aggregate))
            assert exactly(again) == exactly(aggregate)
            assert type(again) is type(aggregate)
            assert again._pending == []
        assert aggregate is not None
        kinds.add(type(aggregate))
    assert kinds == {Customer, Conversation, Task}


def test_values_keep_their_exact_form() -> None:
    """Times keep their offset, amounts their scale, at the calendar's edges too (a
    client gives an order's time and amount), and orders the order they were recorded
    in: an answer built from a restored customer is byte for byte the one built from
    its history."""
    plus_two = timezone(timedelta(hours=2))
    ada = Customer.register(ctx(), customer_id=uuid4(), name="Ada", owner_department="sales")
    ada.created_on = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=plus_two)
    first = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-14)))
    ada.orders = {  # recorded in this order, which answers list them in
        "o-2": Order(order_id="o-2", amount=Decimal("10.50"), currency="EUR", status="paid",
                     ordered_at=first, updated_at=last),
        "o-1": Order(order_id="o-1", amount=Decimal("1E+30"), currency="EUR", status="paid",
                     ordered_at=last, updated_at=datetime(2026, 1, 2, tzinfo=UTC)),
    }  # fmt: skip
    ada.name, ada.shared_with = ERASED, {"support"}

    again = restored(Customer, snapshot(ada))

    assert again.created_on is not None
    assert again.created_on.utcoffset() == timedelta(hours=2)
    assert list(again.orders) == ["o-2", "o-1"]
    assert [str(o.amount) for o in again.orders.values()] == ["10.50", "1E+30"]
    assert [o.ordered_at.isoformat() for o in again.orders.values()] == [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59.999999-14:00",
    ]
    assert again.state() == ada.state()


def _shaped(fields: list[tuple[str, Any]]) -> type[msgspec.Struct]:
    """A struct named and described as `CustomerState`, with `fields`."""
    shaped = msgspec.defstruct("CustomerState", fields, kw_only=True, frozen=True)
    shaped.__doc__ = CustomerState.__doc__
    return shaped


def test_the_tag_changes_with_the_shape_of_the_state_and_only_with_it() -> None:
    fields = [(f.name, f.type) for f in msgspec.structs.fields(CustomerState)]
    retyped = [(name, int if name == "archived" else kind) for name, kind in fields]

    tag = TAGS[Customer]
    assert tag_of(Customer, _shaped(fields)) == tag
    assert tag_of(Customer, _shaped([*fields, ("nickname", str)])) != tag
    assert tag_of(Customer, _shaped(retyped)) != tag
    assert tag.startswith(f"customer.v{snapshots.FORMAT}.")
    assert len(set(TAGS.values())) == 3


def test_a_snapshot_is_plain_json_with_no_pending_events() -> None:
    ada = Customer.register(ctx(), customer_id=uuid4(), name="Ada", owner_department="sales")
    decoded = msgspec.json.decode(snapshot(ada))
    assert decoded["id"] == str(ada.id)
    assert "_pending" not in decoded
