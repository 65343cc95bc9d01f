"""Shared read model: the customer 360 and the per-customer timeline.

`customers` is the 360 (profile, owner, departments, tags, order count);
`customer_departments` says which departments see a customer (owner or shared) and
is what department lists page through; archiving deletes those rows, so an archived
customer vanishes from every department list while its 360 stays (flag `archived`).
`timeline` has one entry per communication and task event, ordered by
(`occurred_at`, `entry_id`). A message's entry is keyed by its message id, so a
correction rewrites it (`corrected` true) and a retraction deletes it. `work_items`
holds each conversation's and task's handling department, so each timeline entry is
shown only to who may read its own aggregate (at the read model's position).
`search_terms` is the customer search's blind index (`projections.search`).

Personal columns hold the events' sealed values (`enc:v1:...`), never plaintext; a
timeline entry's `content` joins the sealed values of its event with newlines (no
sealed value holds one), which the API splits before opening. Erasure still blanks
them (`Scrub`), and so are the entries of conversation and task events consumed after the
erasure (`_erased`, see `projections.dispatch`): the rows then hold no ciphertext of the
erased customer at all, whatever the topics' order.
Version 3: sealed personal columns, and the search tables.
Version 4: entries consumed after their customer's erasure are blanked too.
Version 5: the customer's e-mail consent (`email_marketing`) beside the e-mail it governs:
the API judged a row's e-mail by `marketing`'s consent, which another consumer applies at
its own pace (a withdrawn consent not yet applied there showed marketing staff an e-mail
stored after it here).
Version 6: `customer_facets` (`projections.facets`), the tags and company starts of the
listed customers per department, so a tag or company filter reads an index range in page
order instead of walking the department.
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain import customer as cust
from domain.base import DomainEvent
from projections.base import (
    ERASED_TABLE,
    Change,
    Delete,
    DeleteWhere,
    Key,
    Rows,
    Upsert,
    erase_everywhere,
    table,
)
from projections.dispatch import DispatchProjection, by_customer, changed
from projections.facets import TABLE as FACETS
from projections.facets import refaceted
from projections.marketing import EMAIL_CONSENT
from projections.search import FIELDS, fields_key, forget_terms, register_search
from projections.search import TABLES as SEARCH_TABLES
from projections.timeline import register_timeline

TABLES = (
    table(
        "customers",
        ("customer_id",),
        "customer_id:uuid name:text company:text email:text phone:text address:text"
        " owner_department:text owner_agent:text departments:text tags:text order_count:int"
        " archived:bool erased:bool registered_at:timestamp updated_at:timestamp"
        " email_marketing:bool",
        subject="customer_id",
        personal=("name", "email", "phone", "address"),
    ),
    table(
        "customer_departments",
        ("department", "customer_id"),
        "department:text customer_id:uuid role:text",
        indexes=(("customer_id",),),
    ),
    table(
        "orders",
        ("customer_id", "order_id"),
        "customer_id:uuid order_id:text amount:numeric currency:text status:text"
        " ordered_at:timestamp updated_at:timestamp",
    ),
    table(
        "timeline",
        ("customer_id", "entry_id"),
        "customer_id:uuid entry_id:text occurred_at:timestamp aggregate_type:text"
        " aggregate_id:uuid aggregate_version:int event_type:text actor:text"
        " actor_department:text detail:text author:text content:text corrected:bool",
        subject="customer_id",
        personal=("author", "content"),
    ),
    table(
        "work_items",
        ("aggregate_id",),
        "aggregate_id:uuid aggregate_type:text department:text",
    ),
    FACETS,
    *SEARCH_TABLES,
    ERASED_TABLE,
)

shared = DispatchProjection("shared", 6, TABLES, search_fields=frozenset(FIELDS))
on = shared.on
_customer = by_customer("customers")


def _departments(owner: str, others: list[str]) -> str:
    return ",".join([owner, *sorted(set(others) - {owner})])


def _membership(customer: Any, department: str, role: str) -> Upsert:
    row = {"department": department, "customer_id": customer, "role": role}
    return Upsert("customer_departments", row)


@on(cust.CustomerRegistered, keys=_customer)
def _registered(e: cust.CustomerRegistered, rows: Rows) -> list[Change]:
    row = {
        "customer_id": e.originator_id, "name": e.name, "company": e.company, "email": e.email,
        "phone": e.phone, "address": e.address, "owner_department": e.owner_department,
        "owner_agent": e.owner_agent, "departments": e.owner_department,
        "tags": ",".join(sorted(set(e.tags))), "order_count": 0, "archived": False,
        "erased": False, "registered_at": e.occurred_at, "updated_at": e.occurred_at,
        "email_marketing": e.consents.get(EMAIL_CONSENT, False),
    }  # fmt: skip
    owner = _membership(e.originator_id, e.owner_department, "owner")
    return [*_rewritten(rows.get("customers", (e.originator_id,)), row), owner]


def _update(rows: Rows, e: DomainEvent, **values: Any) -> list[Change]:
    row = rows.get("customers", (e.originator_id,))
    if row is None:
        return []
    return _rewritten(row, changed(row, updated_at=e.occurred_at, **values))


def _rewritten(before: dict[str, Any] | None, after: dict[str, Any]) -> list[Change]:
    """The customer's new row, and its facets rewritten to match."""
    return [Upsert("customers", after), *refaceted(before, after)]


@on(cust.CustomerProfileUpdated, keys=_customer)
def _profile(e: cust.CustomerProfileUpdated, rows: Rows) -> list[Change]:
    fields = ("name", "company", "email", "phone", "address")
    return _update(rows, e, **{f: v for f in fields if (v := getattr(e, f)) is not msgspec.UNSET})


@on(cust.CustomerConsentChanged, keys=_customer)
def _consent(e: cust.CustomerConsentChanged, rows: Rows) -> list[Change]:
    if e.consent != EMAIL_CONSENT:
        return []
    return _update(rows, e, email_marketing=e.granted)


@on(cust.CustomerOwnerChanged, keys=_customer)
def _owner(e: cust.CustomerOwnerChanged, rows: Rows) -> list[Change]:
    row = rows.get("customers", (e.originator_id,))
    if row is None or row["archived"]:
        return []
    others = row["departments"].split(",")[1:]
    return [
        Delete("customer_departments", (e.from_department, e.originator_id)),
        *[_membership(e.originator_id, d, "shared") for d in others if d != e.to_department],
        _membership(e.originator_id, e.to_department, "owner"),
        *_update(rows, e, owner_department=e.to_department, owner_agent=e.to_agent,
                 departments=_departments(e.to_department, others)),
    ]  # fmt: skip


@on(cust.CustomerShared, cust.CustomerUnshared, keys=_customer)
def _sharing(e: cust.CustomerShared | cust.CustomerUnshared, rows: Rows) -> list[Change]:
    row = rows.get("customers", (e.originator_id,))
    if row is None or row["archived"] or e.department == row["owner_department"]:
        return []
    owner, *others = row["departments"].split(",")
    if isinstance(e, cust.CustomerShared):
        member: Change = _membership(e.originator_id, e.department, "shared")
        others.append(e.department)
    else:
        member = Delete("customer_departments", (e.department, e.originator_id))
        others = [d for d in others if d != e.department]
    return [member, *_update(rows, e, departments=_departments(owner, others))]


@on(cust.CustomerTagged, cust.CustomerUntagged, keys=_customer)
def _tags(e: cust.CustomerTagged | cust.CustomerUntagged, rows: Rows) -> list[Change]:
    row = rows.get("customers", (e.originator_id,))
    if row is None:
        return []
    tags = {t for t in row["tags"].split(",") if t} - {e.tag}
    if isinstance(e, cust.CustomerTagged):
        tags.add(e.tag)
    return _update(rows, e, tags=",".join(sorted(tags)))


def _order_key(e: Any) -> list[Key]:
    return [*_customer(e), ("orders", (e.originator_id, e.order_id))]


@on(cust.OrderRecorded, keys=_order_key)
def _order(e: cust.OrderRecorded, rows: Rows) -> list[Change]:
    row = rows.get("customers", (e.originator_id,))
    order = {
        "customer_id": e.originator_id, "order_id": e.order_id, "amount": e.amount,
        "currency": e.currency, "status": e.status, "ordered_at": e.ordered_at,
        "updated_at": e.occurred_at,
    }  # fmt: skip
    count = [] if row is None else _update(rows, e, order_count=row["order_count"] + 1)
    return [Upsert("orders", order), *count]


@on(cust.OrderStatusChanged, keys=_order_key)
def _order_status(e: cust.OrderStatusChanged, rows: Rows) -> list[Change]:
    order = rows.get("orders", (e.originator_id, e.order_id))
    if order is None:
        return []
    return [Upsert("orders", changed(order, status=e.to_status, updated_at=e.occurred_at))]


@on(cust.CustomerArchived, keys=_customer)
def _archived(e: cust.CustomerArchived, rows: Rows) -> list[Change]:
    gone = DeleteWhere("customer_departments", "customer_id", e.originator_id)
    return [gone, *_update(rows, e, archived=True)]


@on(cust.CustomerErased, keys=lambda e: [*_customer(e), fields_key(e.originator_id)])
def _erased(e: cust.CustomerErased, rows: Rows) -> list[Change]:
    # the flag first: the scrub then blanks the updated row too
    return [
        *_update(rows, e, erased=True),
        *erase_everywhere(TABLES, e.originator_id),
        *forget_terms(rows, e.originator_id),
    ]


register_timeline(shared)
register_search(shared)
