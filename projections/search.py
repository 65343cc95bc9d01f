"""Customer search in the shared read model: blind-index terms per customer.

`search_terms` holds one row per (term, customer). A term is the keyed HMAC of a
normalised e-mail, phone number or word of the name, or `c:` and the case-folded company
(business data, matched by prefix). The projection never sees plaintext or the search
key: the terms arrive as `SearchTerms` that the consumer derived from a
`CustomerRegistered` or `CustomerProfileUpdated` (`consumers.blind_index`), applied right
after their event. `_search_fields` keeps each customer's current terms per field, so a
change deletes exactly the terms it replaces.

Erasure deletes a customer's terms. A rebuild after an erasure derives no terms from
the personal fields (their key is gone) and deletes the company's again at the
`CustomerErased`, so rebuild equals live. The view `search_terms` is kept from the
analysts' SQL role (`analysts=False`): a blind index shows which customers share a
value, which analysts, who never see e-mails or phones, need not learn.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from projections.base import Change, Delete, Key, Rows, SearchTerms, Upsert, table
from projections.dispatch import DispatchProjection

FIELDS = ("email", "phone", "name", "company")
SEPARATOR = "\n"
"""Between the terms of one field in `_search_fields` (no term holds a newline)."""

TABLES = (
    table(
        "search_terms",
        ("term", "customer_id"),
        "term:text customer_id:uuid",
        indexes=(("customer_id",),),
        analysts=False,
    ),
    table(
        "_search_fields",
        ("customer_id",),
        "customer_id:uuid " + " ".join(f"{name}:text" for name in FIELDS),
    ),
)


def fields_key(customer_id: UUID) -> Key:
    """The `_search_fields` row of a customer, for the key rules of its events."""
    return ("_search_fields", (customer_id,))


def _split(value: str | None) -> list[str]:
    return value.split(SEPARATOR) if value else []


def _terms(t: SearchTerms, rows: Rows) -> list[Change]:
    """Replace the terms of each field the event set; keep the others."""
    customer = t.customer_id
    row: dict[str, Any] = rows.get(*fields_key(customer)) or {
        "customer_id": customer,
        **dict.fromkeys(FIELDS),
    }
    changes: list[Change] = []
    for field, terms in sorted(t.terms.items()):
        before, after = set(_split(row[field])), set(terms)
        changes += [Delete("search_terms", (term, customer)) for term in sorted(before - after)]
        changes += [
            Upsert("search_terms", {"term": term, "customer_id": customer})
            for term in sorted(after - before)
        ]
        row = {**row, field: SEPARATOR.join(sorted(after)) or None}
    return [*changes, Upsert("_search_fields", row)]


def forget_terms(rows: Rows, customer_id: UUID) -> list[Change]:
    """Delete every search term of an erased customer (load `fields_key` first)."""
    row = rows.get(*fields_key(customer_id))
    if row is None:
        return []
    terms = sorted({term for field in FIELDS for term in _split(row[field])})
    return [
        *(Delete("search_terms", (term, customer_id)) for term in terms),
        Delete("_search_fields", (customer_id,)),
    ]


def register_search(projection: DispatchProjection) -> None:
    """Add the search handlers to `projection` (the shared read model)."""
    projection.on(SearchTerms, keys=lambda t: [fields_key(t.customer_id)])(_terms)
