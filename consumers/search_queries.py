"""The customer search query over the stable read-model views, on both stores.

A customer matches when it has every wanted blind-index term (`consumers.blind_index`:
exact e-mail, exact phone, each word of the name), a company term starting with the
wanted prefix, and the wanted tag; archived and erased customers never match. The first
term drives the query through the primary key of `shared.search_terms` (term,
customer_id), so an exact e-mail or phone costs a few index lookups at any number of
customers. `department` keeps the customers that department owns or shares (the
caller's, when the access model limits them to it), so pages stay full; rows come
back like a department list's (sealed personal columns, `role` in that department,
`email_marketing` for the access model), by customer id from `after` (keyset pages).

I/O: the read-model store.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from consumers import readmodel_queries as rq
from consumers.readmodel_store import ReadModelStore

Row = dict[str, Any]
VIEWS = {
    "c": "shared.customers",
    "m": "shared.customer_departments",
    "s": "shared.search_terms",
}


def search_customers(
    store: ReadModelStore,
    *,
    terms: list[str],
    company: str | None = None,
    tag: str | None = None,
    department: str | None = None,
    consenting: bool = False,
    after: UUID | None = None,
    limit: int = 50,
) -> list[Row]:
    """Customers with all `terms`, a company term starting with `company` (a term
    prefix, `c:...`) and `tag`, in `department` (None: any), with `consenting` only
    those consenting to e-mail marketing, by id after `after`."""
    params: Row = {"department": department, "after": after, "limit": limit}
    params |= {"tag": rq.tag_pattern(tag), "company": _prefix_pattern(company)}
    params |= {f"t{i}": term for i, term in enumerate(terms)}
    query = (
        "SELECT c.*, " + ("m.role" if department else "NULL AS role")
        + _source(terms, company, department, after)
        + " WHERE NOT c.archived AND NOT c.erased"
        + "".join(_having(f"s.term = %(t{i})s") for i in range(1, len(terms)))
        + (_having("s.term LIKE %(company)s ESCAPE '!'") if company and terms else "")
        + ("" if tag is None else " AND (',' || c.tags || ',') LIKE %(tag)s ESCAPE '!'")
        + (" AND c.email_marketing" if consenting else "")
        + ("" if after is None else " AND c.customer_id > %(after)s")
        + " ORDER BY c.customer_id LIMIT %(limit)s"
    )  # fmt: skip
    return rq.typed_fetch(store, query, VIEWS, params, role="text")


def _source(
    terms: list[str], company: str | None, department: str | None, after: UUID | None
) -> str:
    """FROM: the first term (or the company prefix) drives, then the customer and its
    membership in `department` (past the cursor: `readmodel_queries.past`)."""
    if terms:
        driver = " FROM {s} d JOIN {c} c ON c.customer_id = d.customer_id AND d.term = %(t0)s"
    elif company:
        driver = (
            " FROM {s} d JOIN {c} c ON c.customer_id = d.customer_id"
            " AND d.term LIKE %(company)s ESCAPE '!'"
        )
    else:
        driver = " FROM {c} c"
    if department is None:
        return driver
    return driver + (
        " JOIN {m} m ON m.customer_id = c.customer_id AND m.department = %(department)s"
        + rq.past("m", after)
    )


def _having(condition: str) -> str:
    return (
        " AND EXISTS (SELECT 1 FROM {s} s WHERE s.customer_id = c.customer_id AND "
        + condition
        + ")"
    )


def _prefix_pattern(prefix: str | None) -> str | None:
    if prefix is None:
        return None
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
