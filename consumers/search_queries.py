"""The customer search query over the stable read-model views, on both stores.

A customer matches when it has every wanted blind-index term (`consumers.blind_index`:
exact e-mail, exact phone, each word of the name), a company term starting with the
wanted prefix, and the wanted tag; archived and erased customers never match. The first
term drives the query through the primary key of `shared.search_terms` (term,
customer_id), so an exact e-mail or phone costs a few index lookups at any number of
customers. Without a term, the tag or the company start drives through its facet
(`shared.customer_facets`: (facet, department, customer_id), see `projections.facets`)
in id order, so a page costs what it shows however many customers the department has.
`department` keeps the customers that department owns or shares (the
caller's, when the access model limits them to it), so pages stay full; rows come
back like a department list's (sealed personal columns, `role` in that department,
`email_marketing` for the access model), by customer id from `after` (keyset pages).

I/O: the read-model store.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from uuid import UUID

from consumers import readmodel_queries as rq
from consumers.blind_index import COMPANY_PREFIX
from consumers.readmodel_store import ReadModelStore
from consumers.typed_rows import typed_fetch
from projections.facets import PREFIX_CHARS, prefix_facet, tag_facet
from projections.satisfaction import ALL

Row = dict[str, Any]
VIEWS = {
    "c": "shared.customers",
    "m": "shared.customer_departments",
    "s": "shared.search_terms",
} | rq.FACET_VIEW
FEW_COMPANIES = 1000
"""A company start longer than `PREFIX_CHARS` that at most this many customers have is
read through the company terms (`search_terms`) and sorted; one more common, through the
facet of its first characters in id order, whose customers it matches then fill a page
soon. Either way a page reads about this many rows at most, not every match."""


class Driver(NamedTuple):
    """The rows a search reads first, in id order where it can: `FROM`, its alias, and
    which of the tag and company conditions reading them already holds."""

    source: str
    alias: str
    holds: frozenset[str] = frozenset()


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
    terms = list(dict.fromkeys(terms))  # distinct: `_having_all` counts the matched
    start = None if company is None else company.removeprefix(COMPANY_PREFIX)
    params: Row = {"department": department, "after": after, "limit": limit}
    params |= {"scope": department or ALL, "all": ALL, "company": _prefix_pattern(company)}
    params |= {f"t{i}": term for i, term in enumerate(terms)}
    params |= {"tag": None if tag is None else tag_facet(tag), "start": _start_facet(start)}
    params |= _bounds(company)
    driver = _driver(store, terms, start, tag, params)
    query = (
        "SELECT c.*, " + ("m.role" if department else "NULL AS role")
        + driver.source
        + ("" if department is None else _member(after, _first(store, driver)))
        + " WHERE NOT c.archived AND NOT c.erased"
        + _having_all(len(terms))
        + ("" if start is None or "company" in driver.holds else _company_filter(start))
        + ("" if tag is None or "tag" in driver.holds else _faceted("tag"))
        + (" AND c.email_marketing" if consenting else "")
        + ("" if after is None else " AND c.customer_id > %(after)s")
        + rq.past(driver.alias, after if driver.alias != "c" else None)
        + f" ORDER BY {driver.alias}.customer_id LIMIT %(limit)s"
    )  # fmt: skip
    return typed_fetch(store, query, VIEWS, params, role="text")


def _driver(
    store: ReadModelStore, terms: list[str], start: str | None, tag: str | None, params: Row
) -> Driver:
    """The first term, else the tag's facet, else the company start's (the facet of its
    first characters when one as long is common), else the company terms, else every
    customer. Facets are the department's (`scope`, all: `ALL`)."""
    if terms:
        return Driver(_joined("{s} d", "d.term = %(t0)s"), "d")
    if tag is not None:
        tagged = _joined("{f} t", "t.facet = %(tag)s AND t.department = %(scope)s")
        if params["start"] is None:
            return Driver(tagged, "t", frozenset({"tag"}))
        # both facets' ranges, in id order: PostgreSQL merges them, and stops at the end
        # of the shorter (a tag and a company start, each common, that no customer has both)
        started = " JOIN {f} p ON p.customer_id = t.customer_id AND p.facet = %(start)s"
        both = tagged + started + " AND p.department = %(scope)s" + rq.past("p", params["after"])
        return Driver(both, "t", frozenset({"tag", "company"}))
    if not start:
        return Driver(" FROM {c} c", "c")
    if len(start) > PREFIX_CHARS and not _common(store, params):
        ranged = _joined("{s} d", "d.term LIKE %(company)s ESCAPE '!'" + _term_range("d"))
        return Driver(ranged, "d", frozenset({"company"}))
    params["first"] = prefix_facet(start[:PREFIX_CHARS])
    started = _joined("{f} p", "p.facet = %(first)s AND p.department = %(scope)s")
    return Driver(started, "p", frozenset({"company"} if len(start) <= PREFIX_CHARS else ()))


def _joined(driver: str, condition: str) -> str:
    alias = driver.rsplit(" ", 1)[1]
    return f" FROM {driver} JOIN {{c}} c ON c.customer_id = {alias}.customer_id AND {condition}"


def _common(store: ReadModelStore, params: Row) -> bool:
    """Whether more than `FEW_COMPANIES` company terms start with `company`: reading at
    most one more, from the index in term order (PostgreSQL would rather scan the table
    for a common start, and its rows may come late in it)."""
    query = (
        "SELECT count(*) AS n FROM (SELECT 1 FROM {s} s WHERE s.term LIKE %(company)s"
        " ESCAPE '!'" + _term_range("s") + " ORDER BY s.term LIMIT %(few)s) f"
    )
    found = typed_fetch(store, query, VIEWS, params | {"few": FEW_COMPANIES + 1}, n="bigint")
    return int(found[0]["n"]) > FEW_COMPANIES


def _first(store: ReadModelStore, driver: Driver) -> str:
    """How to join the department's members after `driver`: on SQLite `CROSS JOIN`, which
    keeps the driver first (its planner would rather read the whole department and probe
    the driver's rows by customer); PostgreSQL has the statistics to see that."""
    return "CROSS JOIN" if store.dialect == "sqlite" and driver.alias != "c" else "JOIN"


def _member(after: UUID | None, join: str) -> str:
    """The customer's membership in `department` (past the cursor: `rq.past`)."""
    return (
        f" {join} {{m}} m ON m.customer_id = c.customer_id AND m.department = %(department)s"
        + rq.past("m", after)
    )


def _company_filter(start: str) -> str:
    """The company start's facet if it has one (one key lookup), else the company terms."""
    if 0 < len(start) <= PREFIX_CHARS:
        return _faceted("start")
    return _having("s.term LIKE %(company)s ESCAPE '!'")


def _faceted(name: str) -> str:
    """The customer has the facet `%(name)s` (its row under `ALL`: one key lookup)."""
    return (
        " AND EXISTS (SELECT 1 FROM {f} x WHERE x.facet = %(" + name + ")s"
        " AND x.department = %(all)s AND x.customer_id = c.customer_id)"
    )


def _having_all(count: int) -> str:
    """Every term after the first (`t1`...), in one counted subquery. One EXISTS a term
    made PostgreSQL plan as many semi-joins, in time growing steeply with their number
    (planning 5 terms ~90 ms, 39 terms ~2 s; a 120-character name of 40 two-letter
    words hit CRM_READ_QUERY_SECONDS on 60 customers). (term, customer_id) is the
    table's key and the terms are distinct, so the count is the number matched."""
    if count < 2:
        return ""
    rest = ", ".join(f"%(t{i})s" for i in range(1, count))
    return (
        " AND (SELECT count(*) FROM {s} s WHERE s.customer_id = c.customer_id"
        f" AND s.term IN ({rest})) = {count - 1}"
    )


def _having(condition: str) -> str:
    return (
        " AND EXISTS (SELECT 1 FROM {s} s WHERE s.customer_id = c.customer_id AND "
        + condition
        + ")"
    )


def _start_facet(start: str | None) -> str | None:
    return prefix_facet(start) if start and len(start) <= PREFIX_CHARS else None


def _term_range(alias: str) -> str:
    """The index range of the terms starting with `company` (`_bounds`): LIKE is
    case-insensitive on SQLite, which then reads no index for it."""
    return f" AND {alias}.term >= %(low)s AND {alias}.term < %(high)s"


def _bounds(prefix: str | None) -> Row:
    """`low` <= every text starting with `prefix` < `high`, in code point order (that of
    UTF-8 bytes: SQLite's and PostgreSQL's `C` collation). `prefix` is a company term's
    start (`c:...`), so it has a character below U+10FFFF to count up."""
    if prefix is None:
        return {"low": None, "high": None}
    head = prefix.rstrip("\U0010ffff")
    after = ord(head[-1]) + 1
    return {"low": prefix, "high": head[:-1] + chr(0xE000 if 0xD800 <= after < 0xE000 else after)}


def _prefix_pattern(prefix: str | None) -> str | None:
    if prefix is None:
        return None
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
