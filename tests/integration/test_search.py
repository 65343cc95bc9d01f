"""Customer search (`GET /v1/customers?email=&phone=&name=&company=&tag=`) on both stores.

Exact e-mail (any case) and phone (any spelling of the same number), whole words of the
name, company by prefix, tags; only customers the caller may read, masked as `GET`
masks them; nothing once erased. The read models hold no plaintext to search: the
terms are keyed HMACs (`consumers.blind_index`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from bench.databases import fresh_database
from tests.integration.api_support import EmbeddedApi, embedded_api

Client = TestClient[Any]


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedApi]:
    if request.param == "sqlite":
        with embedded_api(tmp_path) as embedded:
            yield embedded
        return
    server_url: str = request.getfixturevalue("server_url")
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(server_url, prefix="crm_search"))
        yield stack.enter_context(embedded_api(tmp_path, database_url=url))


def _found(client: Client, headers: dict[str, str], query: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/customers?{query}", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _ids(client: Client, headers: dict[str, str], query: str) -> set[str]:
    return {str(row["customer_id"]) for row in _found(client, headers, query)}


def _register(client: Client, headers: dict[str, str], **fields: Any) -> str:
    body = {"owner_department": "sales"} | fields
    response = client.post("/v1/customers", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_search_finds_by_each_field_only_for_callers_who_may_read(api: EmbeddedApi) -> None:
    mark = uuid.uuid4().hex[:10]
    sales = api.token("sam", "sales", "agent")
    support = api.token("sue", "support", "agent")
    analyst = api.token("ann", "analytics", "analyst")
    with TestClient(app=api.app) as client:
        ada = _register(
            client, sales, name=f"Ada Zq{mark} Lovelace", email=f"Ada.{mark}@Example.com",
            phone="+49 30 1234-5678", company=f"Zeta{mark} Engines GmbH", tags=["vip"],
        )  # fmt: skip
        bob = _register(client, sales, name=f"Bob Zq{mark}", company=f"zeta{mark} Labs")
        api.catch_up()
        assert _ids(client, sales, f"email=ada.{mark}@EXAMPLE.com") == {ada}
        assert _ids(client, sales, "phone=0049 (30) 12345678") == {ada}
        assert _ids(client, sales, f"name=zq{mark}") == {ada, bob}
        assert _ids(client, sales, f"name=LOVELACE zq{mark}") == {ada}
        assert _ids(client, sales, f"name=Lovel zq{mark}") == set()  # whole words only
        assert _ids(client, sales, f"company=ZETA{mark}") == {ada, bob}
        assert _ids(client, sales, f"company=zeta{mark} e") == {ada}
        assert _ids(client, sales, f"name=zq{mark}&tag=vip") == {ada}
        assert _ids(client, sales, f"name=zq{mark}&email=bob.{mark}@example.com") == set()
        (row,) = _found(client, sales, f"email=ada.{mark}@example.com")
        assert row["email"] == f"ada.{mark}@example.com"  # opened for its department
        assert row["name"] == f"Ada Zq{mark} Lovelace"
        for query in (f"email=ada.{mark}@example.com", f"name=zq{mark}", f"company=zeta{mark}"):
            assert _ids(client, support, query) == set()  # another department's customers
        (seen,) = _found(client, analyst, f"company=zeta{mark} e")
        assert (seen["email"], seen["phone"], seen["name"]) == ("[masked]",) * 3
        client.post(f"/v1/customers/{ada}/shares", json={"department": "support"}, headers=sales)
        api.catch_up()
        assert _ids(client, support, f"name=zq{mark}") == {ada}


def test_nobody_finds_a_customer_by_a_field_they_may_not_read(api: EmbeddedApi) -> None:
    """A search by a personal field is a question about its value: finding a customer by
    an e-mail shown masked told the searcher the e-mail. Marketing staff read e-mails
    only of customers consenting to e-mail marketing and no phone, analysts no personal
    field."""
    mark = uuid.uuid4().hex[:10]
    sales = api.token("sam", "sales", "agent")
    marketing = api.token("max", "marketing", "agent")
    analyst = api.token("ann", "analytics", "analyst")
    with TestClient(app=api.app) as client:
        fields = {"name": f"Ida Zq{mark}", "company": f"Kappa{mark}", "phone": "+49 30 555-0101"}
        silent = _register(client, sales, **fields, email=f"ida.{mark}@example.com")
        keen = _register(
            client, sales, name=f"Kim Zq{mark}", email=f"kim.{mark}@example.com",
            consents={"email_marketing": True},
        )  # fmt: skip
        for customer in (silent, keen):
            shared = {"department": "marketing"}
            sent = client.post(f"/v1/customers/{customer}/shares", json=shared, headers=sales)
            assert sent.status_code == 200, sent.text
        api.catch_up()
        assert _ids(client, marketing, f"email=ida.{mark}@example.com") == set()
        (found,) = _found(client, marketing, f"email=kim.{mark}@example.com")
        assert (found["customer_id"], found["email"]) == (keen, f"kim.{mark}@example.com")
        assert _ids(client, marketing, "phone=+49 30 5550101") == set()  # never theirs
        assert _ids(client, sales, "phone=+49 30 5550101") == {silent}
        for query in (f"email=ida.{mark}@example.com", "phone=+49 30 5550101", f"name=zq{mark}"):
            assert _ids(client, analyst, query) == set(), query
            assert _ids(client, analyst, f"{query}&company=kappa{mark}") == set(), query
        assert _ids(client, analyst, f"company=kappa{mark}") == {silent}


def test_no_cursor_names_a_customer_the_searcher_may_not_find(api: EmbeddedApi) -> None:
    """A page's `next_cursor` is its last row's id. Rows the searcher may not find by the
    value searched were left out of the answer but not of the query, so a page of them
    answered no row and a cursor naming the first: to an analyst, whose customer has the
    name searched; to marketing staff, whose customer not consenting has the e-mail."""
    mark = uuid.uuid4().hex[:10]
    sales = api.token("sam", "sales", "agent")
    marketing = api.token("max", "marketing", "agent")
    analyst = api.token("ann", "analytics", "analyst")
    twins = {"name": f"Ida Zq{mark}", "email": f"ida.{mark}@example.com"}
    with TestClient(app=api.app) as client:
        for _ in range(2):  # not consenting to e-mail marketing
            customer = _register(client, sales, **twins)
            shared = {"department": "marketing"}
            sent = client.post(f"/v1/customers/{customer}/shares", json=shared, headers=sales)
            assert sent.status_code == 200, sent.text
        api.catch_up()
        pages = [
            (analyst, f"name=zq{mark}"),
            (analyst, f"email=ida.{mark}@example.com"),
            (marketing, f"email=ida.{mark}@example.com"),
        ]
        for headers, query in pages:
            page = client.get(f"/v1/customers?{query}&limit=1", headers=headers).json()
            assert page == {"items": [], "next_cursor": None}, query
        assert len(_ids(client, marketing, f"name=zq{mark}")) == 2  # theirs to find by name


def test_a_search_that_finds_nobody_checks_its_input_as_any_search(api: EmbeddedApi) -> None:
    """An analyst finds nobody by a personal field, so the search answered an empty page
    before reading its input: a malformed cursor or e-mail was a 200 to them and a 400
    to anyone else."""
    analyst = api.token("ann", "analytics", "analyst")
    admin = api.token("root", "it", "admin")
    with TestClient(app=api.app) as client:
        for query in ("name=ida&cursor=not-a-cursor", "email=not-an-e-mail", "phone=x"):
            answers = {
                role: client.get(f"/v1/customers?{query}", headers=headers).status_code
                for role, headers in (("analyst", analyst), ("admin", admin))
            }
            assert answers["analyst"] == answers["admin"] in (400, 422), (query, answers)
        found = client.get("/v1/customers?name=ida", headers=analyst)
        assert found.json() == {"items": [], "next_cursor": None}, found.text


def test_search_pages_by_id_and_refuses_what_cannot_match(api: EmbeddedApi) -> None:
    mark = uuid.uuid4().hex[:10]
    admin = api.token("root", "it", "admin")
    with TestClient(app=api.app) as client:
        ids = {_register(client, admin, name=f"Cy Zq{mark} {n}") for n in range(3)}
        api.catch_up()
        pages: list[str] = []
        cursor = ""
        while True:
            answer = client.get(f"/v1/customers?name=zq{mark}&limit=1{cursor}", headers=admin)
            pages += [str(row["customer_id"]) for row in answer.json()["items"]]
            if answer.json()["next_cursor"] is None:
                break
            cursor = f"&cursor={answer.json()['next_cursor']}"
        assert pages == sorted(ids)
        assert client.get("/v1/customers", headers=admin).status_code == 400
        assert client.get("/v1/customers?email=nobody", headers=admin).status_code == 422
        assert client.get("/v1/customers?phone=030123", headers=admin).status_code == 422
        assert client.get("/v1/customers?name=--", headers=admin).status_code == 422


def test_an_erased_customer_is_found_by_nothing(api: EmbeddedApi) -> None:
    mark = uuid.uuid4().hex[:10]
    admin = api.token("root", "it", "admin")
    fields = {
        "name": f"Eve Zq{mark}", "email": f"eve.{mark}@example.com", "phone": "+44 20 7946 0958",
        "company": f"Omega{mark}", "tags": ["gone"],
    }  # fmt: skip
    queries = [
        f"name=zq{mark}", f"email=eve.{mark}@example.com", "phone=%2B442079460958",
        "phone=+44 20 79460958",  # an unencoded + reads as a space: still the number
        f"company=omega{mark}", f"company=omega{mark}&tag=gone",
    ]  # fmt: skip
    with TestClient(app=api.app) as client:
        eve = _register(client, admin, **fields)
        api.catch_up()
        assert [_ids(client, admin, q) for q in queries] == [{eve}] * len(queries)
        erased = client.post(f"/v1/customers/{eve}/erasure", json={}, headers=admin)
        assert erased.status_code == 200, erased.text
        api.catch_up()
        assert [_ids(client, admin, q) for q in queries] == [set()] * len(queries)
        with api.store.session(_shared(), _live(api)) as session:
            assert session.load_rows(_table("_search_fields"), [(uuid.UUID(eve),)]) == []


def _shared() -> Any:
    from projections import PROJECTIONS

    return PROJECTIONS["shared"]


def _live(api: EmbeddedApi) -> int:
    generation = api.store.live_generation("shared")
    assert generation is not None
    return generation


def _table(name: str) -> Any:
    return next(t for t in _shared().tables if t.name == name)
