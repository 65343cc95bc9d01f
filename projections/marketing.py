"""Marketing read model: segments by tag, consent and NPS category.

Marketing may not see phone numbers or addresses at all, and sees an email address
only while the customer consents to `email_marketing`. The address is kept in the
private `_contacts` table (not exposed in the stable schema) so that a later consent
can reveal it without replaying history. Archived customers are deleted. The latest
NPS answer lives in its own table (`nps`), not in `customers`: it comes from another
aggregate, whose events may arrive before the registration on replay.
Version 2: a consent changed after archiving (the domain allows it) no longer brings
back a `consents` row of the archived customer.
Version 3: the e-mail is kept sealed, as the event carries it (never plaintext).
Version 4: erased customers are remembered (`_erased`), as in every projection with
personal columns.
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain import conversation as conv
from domain import customer as cust
from projections.base import (
    ERASED_TABLE,
    Change,
    Delete,
    DeleteWhere,
    Rows,
    Upsert,
    erase_everywhere,
    table,
)
from projections.dispatch import (
    ARCHIVED_TABLE,
    DispatchProjection,
    archive_marker,
    by_customer,
    changed,
    customer_of,
)
from projections.satisfaction import nps_category

EMAIL_CONSENT = "email_marketing"

TABLES = (
    table(
        "customers",
        ("customer_id",),
        "customer_id:uuid company:text owner_department:text email:text"
        " email_marketing:bool registered_at:timestamp",
        subject="customer_id",
        personal=("email",),
    ),
    table(
        "nps",
        ("customer_id",),
        "customer_id:uuid score:int category:text answered_at:timestamp",
        indexes=(("category",),),
    ),
    table("tags", ("customer_id", "tag"), "customer_id:uuid tag:text", indexes=(("tag",),)),
    table(
        "consents",
        ("customer_id", "consent"),
        "customer_id:uuid consent:text granted:bool",
        indexes=(("consent", "granted"),),
    ),
    table(
        "_contacts",
        ("customer_id",),
        "customer_id:uuid email:text",
        subject="customer_id",
        personal=("email",),
    ),
    ARCHIVED_TABLE,
    ERASED_TABLE,
)

marketing = DispatchProjection("marketing", 4, TABLES)
_MARKERS = (ARCHIVED_TABLE, ERASED_TABLE)
on = marketing.on
on_active = marketing.on_active
_customer_rows = by_customer("customers")


def _rows(e: Any) -> list[tuple[str, tuple[Any, ...]]]:
    return [*_customer_rows(e), ("_contacts", (customer_of(e),))]


@on(cust.CustomerRegistered, keys=_rows)
def _registered(e: cust.CustomerRegistered, rows: Rows) -> list[Change]:
    consent = e.consents.get(EMAIL_CONSENT, False)
    row = {
        "customer_id": e.originator_id, "company": e.company,
        "owner_department": e.owner_department, "email": e.email if consent else None,
        "email_marketing": consent, "registered_at": e.occurred_at,
    }  # fmt: skip
    consents = [
        Upsert("consents", {"customer_id": e.originator_id, "consent": k, "granted": v})
        for k, v in sorted(e.consents.items())
    ]
    tags = [Upsert("tags", {"customer_id": e.originator_id, "tag": t}) for t in sorted(e.tags)]
    contact = Upsert("_contacts", {"customer_id": e.originator_id, "email": e.email})
    return [Upsert("customers", row), contact, *consents, *tags]


def _update(rows: Rows, e: Any, **values: Any) -> list[Change]:
    row = rows.get("customers", (customer_of(e),))
    return [] if row is None else [Upsert("customers", changed(row, **values))]


@on(cust.CustomerProfileUpdated, keys=_rows)
def _profile(e: cust.CustomerProfileUpdated, rows: Rows) -> list[Change]:
    row = rows.get("customers", (e.originator_id,))
    if row is None:
        return []
    values: dict[str, Any] = {}
    if e.company is not msgspec.UNSET:
        values["company"] = e.company
    if e.email is msgspec.UNSET:
        return _update(rows, e, **values)
    contact = Upsert("_contacts", {"customer_id": e.originator_id, "email": e.email})
    values["email"] = e.email if row["email_marketing"] else None
    return [contact, *_update(rows, e, **values)]


@on(cust.CustomerOwnerChanged, keys=_customer_rows)
def _owner(e: cust.CustomerOwnerChanged, rows: Rows) -> list[Change]:
    return _update(rows, e, owner_department=e.to_department)


@on(cust.CustomerTagged, keys=_customer_rows)
def _tagged(e: cust.CustomerTagged, rows: Rows) -> list[Change]:
    return [Upsert("tags", {"customer_id": e.originator_id, "tag": e.tag})]


@on(cust.CustomerUntagged, keys=_customer_rows)
def _untagged(e: cust.CustomerUntagged, rows: Rows) -> list[Change]:
    return [Delete("tags", (e.originator_id, e.tag))]


@on_active(cust.CustomerConsentChanged, keys=_rows)  # allowed on archived customers
def _consent(e: cust.CustomerConsentChanged, rows: Rows) -> list[Change]:
    consent = Upsert(
        "consents", {"customer_id": e.originator_id, "consent": e.consent, "granted": e.granted}
    )
    if e.consent != EMAIL_CONSENT:
        return [consent]
    contact = rows.get("_contacts", (e.originator_id,))
    email = contact["email"] if contact is not None and e.granted else None
    return [consent, *_update(rows, e, email_marketing=e.granted, email=email)]


@on_active(conv.RecommendationScored, keys=by_customer("nps"))
def _nps(e: conv.RecommendationScored, rows: Rows) -> list[Change]:
    """The newest answer wins (ties: the higher score), whatever the arrival order."""
    old = rows.get("nps", (e.customer_id,))
    if old is not None and (old["answered_at"], old["score"]) >= (e.occurred_at, e.score):
        return []
    row = {"customer_id": e.customer_id, "score": e.score, "category": nps_category(e.score),
           "answered_at": e.occurred_at}  # fmt: skip
    return [Upsert("nps", row)]


@on(cust.CustomerArchived, keys=_customer_rows)
def _archived(e: cust.CustomerArchived, rows: Rows) -> list[Change]:
    gone = [
        DeleteWhere(t.name, "customer_id", e.originator_id) for t in TABLES if t not in _MARKERS
    ]
    return [*gone, archive_marker(e.originator_id)]


@on(cust.CustomerErased, keys=_rows)
def _erased(e: cust.CustomerErased, rows: Rows) -> list[Change]:
    return erase_everywhere(TABLES, e.originator_id)
