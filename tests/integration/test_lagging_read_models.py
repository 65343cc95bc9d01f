"""A read model lagging behind never shows what the aggregate's state now hides.

Department pages, search and the timeline read rows a projection wrote, which lags
behind the event store (by milliseconds, or for as long as a consumer is down). A row
whose aggregate has events its read model has not applied is judged by the aggregate's
state now as well (`AccessModel.listed(now=...)`): a consent withdrawn since masks the
e-mail and finds nothing by it, a customer unshared or given to another department
leaves the page, a conversation or task moved to another department leaves the old
one's pages and timeline, as a `GET` of it answers at once. Here the read models are
held behind by not running the follower (`EmbeddedApi.catch_up`), on SQLite and on
PostgreSQL (each projection's `_applied` versions, the event store in the same database).
"""

from __future__ import annotations

from typing import Any

import pytest

from domain.base import MASKED
from tests.integration.api_support import Client, EmbeddedApi

EMAIL = "ann.lee@example.com"
SALES, MARKETING = "/v1/departments/sales/customers", "/v1/departments/marketing/customers"
SEARCH = "/v1/customers"
Headers = dict[str, str]


@pytest.fixture
def api(api_on_each_store: EmbeddedApi) -> EmbeddedApi:
    """On each store; `client` (conftest) is a test client of it."""
    return api_on_each_store


@pytest.fixture
def sales(api: EmbeddedApi) -> Headers:
    return api.token("sam", "sales", "agent")


@pytest.fixture
def marketing(api: EmbeddedApi) -> Headers:
    return api.token("mia", "marketing", "agent")


def _ok(client: Client, method: str, url: str, headers: Headers, body: Any = None) -> Any:
    answer = client.request(method, url, json=body, headers=headers)
    assert answer.is_success, answer.text
    return answer.json()


def _rows(client: Client, url: str, headers: Headers, **params: str) -> list[dict[str, Any]]:
    answer = client.get(url, params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _shown(rows: list[dict[str, Any]], column: str = "customer_id") -> set[str]:
    return {row[column] for row in rows}


def _customer(client: Client, sales: Headers, *, shared_with: str) -> str:
    """A sales customer consenting to e-mail marketing, shared with `shared_with`."""
    body = {"name": "Ann Lee", "email": EMAIL, "consents": {"email_marketing": True}}
    customer: str = _ok(client, "POST", "/v1/customers", sales, body)["id"]
    _ok(client, "POST", f"/v1/customers/{customer}/shares", sales, {"department": shared_with})
    return customer


def test_a_consent_withdrawn_since_masks_the_email_and_finds_nothing_by_it(
    api: EmbeddedApi, client: Client, sales: Headers, marketing: Headers
) -> None:
    customer = _customer(client, sales, shared_with="marketing")
    api.catch_up()
    assert [r["email"] for r in _rows(client, MARKETING, marketing)] == [EMAIL]
    assert _shown(_rows(client, SEARCH, marketing, email=EMAIL)) == {customer}

    consents = {"consents": {"email_marketing": False}}
    _ok(client, "PUT", f"/v1/customers/{customer}/consents", sales, consents)  # not applied

    assert _ok(client, "GET", f"/v1/customers/{customer}", marketing)["email"] == MASKED
    listed = _rows(client, MARKETING, marketing)
    assert [(r["customer_id"], r["email"]) for r in listed] == [(customer, MASKED)]
    assert _rows(client, SEARCH, marketing, email=EMAIL) == []
    found = _rows(client, SEARCH, marketing, name="Ann")
    assert [(r["customer_id"], r["email"]) for r in found] == [(customer, MASKED)]
    assert [r["email"] for r in _rows(client, SALES, sales)] == [EMAIL]


def test_a_customer_unshared_or_given_away_since_leaves_the_department_page(
    api: EmbeddedApi, client: Client, sales: Headers, marketing: Headers
) -> None:
    unshared = _customer(client, sales, shared_with="marketing")
    given = _customer(client, sales, shared_with="support")
    kept = _customer(client, sales, shared_with="marketing")
    api.catch_up()
    assert _shown(_rows(client, MARKETING, marketing)) == {unshared, kept}

    _ok(client, "DELETE", f"/v1/customers/{unshared}/shares/marketing", sales)  # not applied
    _ok(client, "PUT", f"/v1/customers/{given}/owner", sales, {"department": "support"})

    assert client.get(f"/v1/customers/{unshared}", headers=marketing).status_code == 404
    assert _shown(_rows(client, MARKETING, marketing)) == {kept}
    assert _shown(_rows(client, SEARCH, marketing, email=EMAIL)) == {kept}
    assert _shown(_rows(client, SALES, sales)) == {unshared, kept}
    assert _shown(_rows(client, SEARCH, sales, name="Ann")) == {unshared, kept}


def test_work_handed_to_another_department_since_leaves_the_old_ones_pages(
    api: EmbeddedApi, client: Client, sales: Headers
) -> None:
    support = api.token("sue", "support", "manager")
    customer = _customer(client, sales, shared_with="support")
    opened = {"customer_id": customer, "department": "support", "channel": "phone"}
    moved = _ok(client, "POST", "/v1/conversations", support, opened | {"subject": "Moved"})["id"]
    stays = _ok(client, "POST", "/v1/conversations", support, opened | {"subject": "Stays"})["id"]
    created = {"customer_id": customer, "department": "support", "title": "Call back"}
    task = _ok(client, "POST", "/v1/tasks", support, created)["id"]
    api.catch_up()
    queue, board = "/v1/departments/support/conversations", "/v1/departments/support/tasks"
    timeline = f"/v1/customers/{customer}/timeline"
    assert _shown(_rows(client, queue, support), "conversation_id") == {moved, stays}
    assert _shown(_rows(client, board, support), "task_id") == {task}
    assert _shown(_rows(client, timeline, support), "aggregate_id") == {moved, stays, task}

    handoff = {"to_department": "sales"}
    _ok(client, "POST", f"/v1/conversations/{moved}/handoffs", support, handoff)  # not applied
    assignment = {"assignee": "someone.else", "department": "sales"}
    _ok(client, "POST", f"/v1/tasks/{task}/assignment", support, assignment)

    assert client.get(f"/v1/conversations/{moved}", headers=support).status_code == 404
    assert _shown(_rows(client, queue, support), "conversation_id") == {stays}
    assert _rows(client, board, support) == []
    assert _shown(_rows(client, timeline, support), "aggregate_id") == {stays}


def test_a_customer_erased_since_is_found_by_none_of_their_values(
    api: EmbeddedApi, client: Client, sales: Headers
) -> None:
    """Until the read model applies the erasure, its search terms find the customer,
    and the answer would confirm the e-mail searched; for any role, an admin too."""
    erased = _customer(client, sales, shared_with="marketing")
    api.catch_up()
    admin = api.token("root", "sales", "admin")
    for who in (sales, admin):
        assert _shown(_rows(client, SEARCH, who, email=EMAIL)) == {erased}

    _ok(client, "POST", f"/v1/customers/{erased}/erasure", admin, {"reason": "asked"})

    for who in (sales, admin):  # not applied: the terms are still there
        assert _rows(client, SEARCH, who, email=EMAIL) == []
        assert _rows(client, SEARCH, who, name="Ann Lee") == []
    api.catch_up()
    assert _rows(client, SEARCH, admin, email=EMAIL) == []
