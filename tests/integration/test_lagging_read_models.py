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

import base64
import json
from typing import Any
from uuid import UUID

import pytest

from domain.base import MASKED
from services.api import read_models
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


def _walk(
    client: Client, url: str, headers: Headers, column: str, **params: str
) -> list[tuple[list[str], str | None]]:
    """Each page of a list (`?limit=1` unless `params` say), followed to its end: the
    ids (`column`) of its rows and what its `next_cursor` names (a keyset cursor: its
    last sort value)."""
    pages: list[tuple[list[str], str | None]] = []
    cursor: str | None = None
    while len(pages) < 20:
        asked = {"limit": "1"} | params | ({} if cursor is None else {"cursor": cursor})
        answer = client.get(url, params=asked, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        cursor = body["next_cursor"]
        pages.append(([row[column] for row in body["items"]], _named(cursor)))
        if cursor is None:
            return pages
    raise AssertionError(f"no end after 20 pages: {pages}")


def _named(cursor: str | None) -> str | None:
    """The row a cursor names: a customer list's is an id, a keyset one's last value."""
    if cursor is None or "-" in cursor:
        return cursor
    named: str = json.loads(base64.urlsafe_b64decode(cursor))[-1]
    return named


def _names_only_rows_shown(pages: list[tuple[list[str], str | None]], shown: set[str]) -> None:
    """Every page's rows are ones the caller may read, its cursor names its last row
    (none on a page of none), and is given only when a row it shows follows: no page
    names a row it left out, nor tells one follows."""
    assert {row for rows, _ in pages for row in rows} == shown, pages
    for (rows, named), (following, _) in zip(pages, [*pages[1:], ([], None)], strict=True):
        assert named is None or (rows and named == rows[-1]), pages
        assert (named is None) == (not following), pages


def test_no_page_of_a_lagging_customer_list_names_a_customer_left_out(
    api: EmbeddedApi, client: Client, sales: Headers, marketing: Headers
) -> None:
    """Before, a marketing page `?limit=1` answered `{"items": [], "next_cursor": <id>}`
    of a customer unshared since (its `GET` a 404), on both stores (red team, F2)."""
    unshared = [_customer(client, sales, shared_with="marketing") for _ in range(3)]
    kept = {_customer(client, sales, shared_with="marketing") for _ in range(2)}
    api.catch_up()
    for customer in unshared:  # not applied
        _ok(client, "DELETE", f"/v1/customers/{customer}/shares/marketing", sales)

    _names_only_rows_shown(_walk(client, MARKETING, marketing, "customer_id"), kept)
    by_email = _walk(client, SEARCH, marketing, "customer_id", email=EMAIL)
    _names_only_rows_shown(by_email, kept)


def test_no_search_names_a_customer_erased_since_by_its_cursor(
    api: EmbeddedApi, client: Client, sales: Headers
) -> None:
    """Before, a search by a guessed e-mail from a cursor just below an erased customer's
    id answered that id as `next_cursor`: the e-mail confirmed (red team, F2)."""
    erased = [_customer(client, sales, shared_with="marketing") for _ in range(3)]
    others = {_customer(client, sales, shared_with="marketing") for _ in range(2)}
    api.catch_up()
    admin = api.token("root", "sales", "admin")
    for customer in erased:  # not applied
        _ok(client, "POST", f"/v1/customers/{customer}/erasure", admin, {"reason": "asked"})

    _names_only_rows_shown(_walk(client, SEARCH, sales, "customer_id", name="Ann"), others)
    for customer in erased:
        below = str(UUID(int=UUID(customer).int - 1))
        page = _ok(client, "GET", f"{SEARCH}?email={EMAIL}&limit=1&cursor={below}", sales)
        named = {row["customer_id"] for row in page["items"]} | {page["next_cursor"]}
        assert not named & set(erased), page


def test_no_page_of_a_lagging_queue_board_or_timeline_names_work_moved_away(
    api: EmbeddedApi, client: Client, sales: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a support timeline `?limit=1` answered no entry and a cursor naming the
    entry of a conversation handed to sales since (red team, F2). A timeline page that
    stops at its size bound counts the entries it shows alone (here 1 byte: each)."""
    support = api.token("sue", "support", "manager")
    customer = _customer(client, sales, shared_with="support")
    opened = {"customer_id": customer, "department": "support", "channel": "phone"}
    conversations = [
        _ok(client, "POST", "/v1/conversations", support, opened | {"subject": f"C{n}"})["id"]
        for n in range(4)
    ]
    created = {"customer_id": customer, "department": "support", "title": "Call back"}
    tasks = [_ok(client, "POST", "/v1/tasks", support, created)["id"] for _ in range(3)]
    api.catch_up()
    moved, stays = conversations[:2] + tasks[:2], set(conversations[2:] + tasks[2:])
    handoff = {"to_department": "sales"}
    for conversation in conversations[:2]:  # not applied
        _ok(client, "POST", f"/v1/conversations/{conversation}/handoffs", support, handoff)
    for task in tasks[:2]:
        assignment = {"assignee": "someone.else", "department": "sales"}
        _ok(client, "POST", f"/v1/tasks/{task}/assignment", support, assignment)

    queue = _walk(client, "/v1/departments/support/conversations", support, "conversation_id")
    _names_only_rows_shown(queue, set(conversations[2:]))
    board = _walk(client, "/v1/departments/support/tasks", support, "task_id")
    _names_only_rows_shown(board, set(tasks[2:]))
    timeline = _walk(client, f"/v1/customers/{customer}/timeline", support, "entry_id")
    _names_only_rows_shown(timeline, {entry for rows, _ in timeline for entry in rows})
    shown = {entry.split("/")[0] for rows, _ in timeline for entry in rows}
    assert shown == stays, timeline
    assert not shown & set(moved), timeline
    monkeypatch.setattr(read_models, "TIMELINE_PAGE_BYTES", 1)
    by_size = _walk(client, f"/v1/customers/{customer}/timeline", support, "entry_id", limit="50")
    assert by_size == [([entry], entry) for rows, _ in timeline for entry in rows] + [([], None)]
