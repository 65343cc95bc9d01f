"""The orders a customer holds: the state one is kept in, and what a new one accepts.

Pure: no I/O. Order ids are unique within a customer, and a customer holds at most
`MAX_ORDERS` of them: the aggregate checks both, since only it knows what it holds.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from domain import validation as check
from domain.base import AwareDatetime, Context


class Order(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    amount: Decimal
    currency: str
    status: str
    ordered_at: AwareDatetime
    updated_at: AwareDatetime


def new_order(
    ctx: Context,
    *,
    amount: Decimal | int | str,
    currency: str,
    status: str,
    ordered_at: datetime | None,
) -> dict[str, Any]:
    """An `OrderRecorded`'s fields but its id, checked: placed no later than the command."""
    return {
        "amount": check.amount(amount),
        "currency": check.currency(currency),
        "status": check.code(status, "status"),
        "ordered_at": check.happened(ordered_at or ctx.occurred_at, ctx.occurred_at, "ordered_at"),
    }
