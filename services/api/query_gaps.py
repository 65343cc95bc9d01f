"""Read-model queries the API needs that `consumers.readmodel_queries` lacks (yet).

`department_customers` there pages a department's customers but cannot filter by tag
and does not say whether a customer consented to email marketing, which the policy
needs to show marketing staff an email address. This version adds both; it belongs in
`consumers.readmodel_queries` and should move there. It reads only the stable views.
I/O: the read-model store, through `ReadModelStore.fetch`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from consumers.readmodel_store import ReadModelStore

TABLES = {
    "m": "shared.customer_departments",
    "c": "shared.customers",
    "k": "marketing.customers",
}


def department_customers(
    store: ReadModelStore, department: str, *, tag: str | None, after: UUID | None, limit: int
) -> list[dict[str, Any]]:
    """Non-archived customers a department owns or shares, by id; `after` = the cursor;
    `email_marketing` is the customer's consent (false when unknown)."""
    query = (
        "SELECT c.*, m.role, coalesce(k.email_marketing, false) AS email_marketing"
        " FROM {m} m JOIN {c} c ON c.customer_id = m.customer_id"
        " LEFT JOIN {k} k ON k.customer_id = m.customer_id"
        " WHERE m.department = %(department)s"
        + ("" if after is None else " AND m.customer_id > %(after)s")
        + ("" if tag is None else " AND (',' || c.tags || ',') LIKE %(tag)s ESCAPE '!'")
        + " ORDER BY m.customer_id LIMIT %(limit)s"
    )
    params = {"department": department, "after": after, "limit": limit, "tag": _pattern(tag)}
    return store.fetch(query, TABLES, params)


def _pattern(tag: str | None) -> str | None:
    if tag is None:
        return None
    escaped = tag.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%,{escaped},%"
