"""Customer facets: the filters of department lists and search, as rows in keyset order.

`customer_facets` holds one row per (facet, department, customer): facet `t:<tag>` for
each tag, and `p:<start>` for each start of the folded company (`fold`) of up to
`PREFIX_CHARS` characters; department is each department that lists the customer
(owner and shared) and `ALL` (every customer, for a search not limited to one). Its
primary key serves "this department's customers with this tag (or company start), by
id" as an index range read in page order, so a page costs what it shows: a tag or a
company start that few customers have is answered without walking the department.

The rows are a function of the customer's row in `customers` (`facets`), rewritten as a
difference whenever that row changes (`refaceted`): none while the customer is archived
(it leaves every list and search), no company starts once erased (search finds no
erased customer).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from projections.base import Change, Delete, Row, Upsert, table
from projections.satisfaction import ALL

PREFIX_CHARS = 3
"""The longest company start stored as a facet. A longer one is found through the
facet of its first `PREFIX_CHARS` characters or the company terms (`search_terms`)."""
TAG, PREFIX = "t:", "p:"

TABLE = table(
    "customer_facets",
    ("facet", "department", "customer_id"),
    "facet:text department:text customer_id:uuid",
)
Facet = tuple[str, str, Any]
"""A row's primary key: (facet, department, customer_id)."""


def fold(text: str) -> str:
    """Unicode-normalised and case-folded: one spelling per value."""
    return unicodedata.normalize("NFKC", text).casefold()


def tag_facet(tag: str) -> str:
    return TAG + tag


def prefix_facet(start: str) -> str:
    """The facet of the customers whose folded company starts with `start` (at most
    `PREFIX_CHARS` characters)."""
    assert 0 < len(start) <= PREFIX_CHARS, start
    return PREFIX + start


def facets(row: Row | None) -> set[Facet]:
    """The facet rows of a customer whose `customers` row is `row`."""
    if row is None or row["archived"]:
        return set()
    names = [tag_facet(tag) for tag in row["tags"].split(",") if tag]
    company = "" if row["erased"] or row["company"] is None else fold(row["company"]).strip()
    names += [prefix_facet(company[:n]) for n in range(1, min(len(company), PREFIX_CHARS) + 1)]
    departments = [*row["departments"].split(","), ALL]
    return {(name, department, row["customer_id"]) for name in names for department in departments}


def refaceted(before: Row | None, after: Row | None) -> list[Change]:
    """The facet rows to delete and insert when a customer's row goes from `before` to
    `after` (in key order: a replay writes the same changes every time)."""
    old, new = facets(before), facets(after)
    return [
        *(Delete(TABLE.name, key) for key in sorted(old - new, key=_order)),
        *(Upsert(TABLE.name, _row(key)) for key in sorted(new - old, key=_order)),
    ]


def _order(key: Facet) -> tuple[str, str, str]:
    return key[0], key[1], str(key[2])


def _row(key: Facet) -> Row:
    facet, department, customer = key
    return {"facet": facet, "department": department, "customer_id": customer}
