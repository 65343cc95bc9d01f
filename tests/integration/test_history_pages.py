"""`GET …/history` answers a page at a time, on both stores: a customer's history has
no bound, and one answer holding all of it would hold it all in memory at once. Reads of
current state and commands read such a history a page at a time too, and a first read
of one stores a snapshot for the next process's first read to start from."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec
import pytest
from litestar.testing import TestClient

from domain.base import MASKED
from domain.conversation import Conversation
from domain.customer import Customer
from domain.snapshot import TAGS
from services.access.fields import EVERYTHING_VISIBLE
from services.access_log import decode
from services.api import conversation_reads, reads
from services.api.conversation_reads import SLICE
from services.api.reads import HISTORY_PAGE
from services.api.views import conversation_view, customer_view
from services.event_store import READ_PAGE
from tests.integration.api_support import EmbeddedApi, embedded_api
from tests.unit.domain.factories import ctx

Client = TestClient[Any]


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedApi]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with embedded_api(tmp_path, database_url=url) as embedded:
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[Client]:
    with TestClient(app=api.app) as test_client:
        yield test_client


def _pages(client: Client, url: str, headers: dict[str, str]) -> list[list[int]]:
    """The versions of each page, following `Link: <…>; rel="next"` from `url`."""
    pages: list[list[int]] = []
    next_url: str | None = url
    while next_url is not None:
        answer = client.get(next_url, headers=headers)
        assert answer.status_code == 200, answer.text
        pages.append([entry["version"] for entry in answer.json()])
        link = answer.headers.get("link")
        next_url = None
        if link is not None:
            found = re.fullmatch(r'<(/v1/[^>]+)>; rel="next"', link)
            assert found, link
            next_url = found.group(1)
    return pages


def test_history_pages_follow_their_links_to_every_event_once(
    client: Client, api: EmbeddedApi
) -> None:
    sales, auditor = api.token("sam", "sales", "agent"), api.token("ann", "audit", "auditor")
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=sales).json()["id"]
    for n in range(5):
        patched = client.patch(
            f"/v1/customers/{customer}", json={"name": f"Ada {n}"}, headers=sales
        )
        assert patched.status_code == 200, patched.text
    url = f"/v1/customers/{customer}/history"

    whole = client.get(url, headers=auditor)
    assert [entry["version"] for entry in whole.json()] == [1, 2, 3, 4, 5, 6]
    assert "link" not in whole.headers  # all of it fits the default page
    assert _pages(client, f"{url}?limit=4", auditor) == [[1, 2, 3, 4], [5, 6]]
    assert _pages(client, f"{url}?limit=3", auditor) == [[1, 2, 3], [4, 5, 6]]  # no empty page
    assert _pages(client, f"{url}?cursor=4&limit=1", auditor) == [[5], [6]]
    assert _pages(client, f"{url}?cursor=6", auditor) == [[]]
    paged = client.get(f"{url}?cursor=2&limit=2", headers=auditor).json()
    assert paged == whole.json()[2:4]  # the same entries, masking and metadata included


def test_history_page_parameters_out_of_range_are_400s(client: Client, api: EmbeddedApi) -> None:
    sales, auditor = api.token("sam", "sales", "agent"), api.token("ann", "audit", "auditor")
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=sales).json()["id"]
    url = f"/v1/customers/{customer}/history"
    hostile = ["limit=0", f"limit={HISTORY_PAGE + 1}", "cursor=-1", f"cursor={2**63}", "limit=x"]
    for query in hostile:
        answer = client.get(f"{url}?{query}", headers=auditor)
        assert answer.status_code == 400, (query, answer.text)
    assert client.get(f"{url}?limit={HISTORY_PAGE}", headers=auditor).status_code == 200


def test_every_history_route_declares_its_page_parameters(client: Client) -> None:
    """Declared, so `/docs` shows them and the hostile-parameter test tries them."""
    paths = client.get("/openapi.json").json()["paths"]
    histories = [path for path in paths if path.endswith("/history")]
    assert len(histories) == 3
    for path in histories:
        names = {parameter["name"] for parameter in paths[path]["get"]["parameters"]}
        assert {"cursor", "limit"} <= names, path


def test_a_history_longer_than_pages_reads_and_takes_commands_whole(
    client: Client, api: EmbeddedApi
) -> None:
    sales = api.token("sam", "sales", "agent")
    ada = Customer.register(
        ctx(), customer_id=uuid4(), name="Ada", email="ada@example.com", owner_department="sales"
    )
    events = 2 * READ_PAGE + 1  # three pages from scratch: this process has read nothing
    for n in range(1, events):
        ada.update_profile(ctx(), company=f"Company {n}")
    api.runtime.app.record(ada)
    url = f"/v1/customers/{ada.id}"

    read = client.get(url, headers=sales).json()
    assert (read["version"], read["company"], read["name"]) == (
        events,
        f"Company {events - 1}",
        "Ada",
    )
    (snapshot,) = api.runtime.app.snapshot_recorder.select_events(ada.id)  # for a cold read
    assert (snapshot.originator_version, snapshot.topic) == (events, TAGS[Customer])
    assert b"ada@example.com" not in snapshot.state  # sealed, as the events hold it
    patched = client.patch(url, json={"name": "Ada K"}, headers=sales)
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == events + 1
    read = client.get(url, headers=sales).json()
    assert (read["version"], read["name"], read["email"]) == (
        events + 1,
        "Ada K",
        "ada@example.com",
    )


def test_another_kinds_id_is_a_404_after_one_page_of_its_history(
    client: Client, api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A customer's history has no bound, and its id asked for as a conversation or a
    task (a read, its history, a command) was read to its end before the 404: pages of
    decoding on the event loop for each such request, from any principal. The first
    event says what an aggregate is."""
    admin = api.token("root", "it", "admin")
    ada = Customer.register(ctx(), customer_id=uuid4(), name="Ada", owner_department="sales")
    for n in range(1, 2 * READ_PAGE + 1):
        ada.update_profile(ctx(), company=f"Company {n}")
    api.runtime.app.record(ada)
    source = api.app.state.services.current._source
    pages: list[int] = []
    events_after = source.events_after

    async def counted(aggregate_id: Any, version: int, limit: int) -> Any:
        pages.append(version)
        return await events_after(aggregate_id, version, limit)

    monkeypatch.setattr(source, "events_after", counted)
    for kind in ("conversations", "tasks"):
        for method, url, body in (
            ("GET", f"/v1/{kind}/{ada.id}", None),
            ("GET", f"/v1/{kind}/{ada.id}/history", None),
            ("POST", f"/v1/{kind}/{ada.id}/reopen", {"reason": "again"}),
        ):
            pages.clear()
            sent = client.request(method, url, json=body, headers=admin)
            assert sent.status_code == 404, (url, sent.text)
            assert len(pages) <= 1, (url, pages)


def test_a_long_conversation_reads_and_takes_commands_from_its_snapshot(
    client: Client, api: EmbeddedApi
) -> None:
    """A conversation is not kept between reads: each read (and a command's load once
    the commands' cache let it go) starts from its newest snapshot, which the first read
    of its long history stored, sealed."""
    sales = api.token("sam", "sales", "agent")
    ada = Customer.register(
        ctx(), customer_id=uuid4(), name="Ada", email="ada@example.com", owner_department="sales"
    )
    talk = Conversation.open(
        ctx(), conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
    )
    events = READ_PAGE + 1  # a full first page, then the rest
    for n in range(1, events):
        talk.log_message(ctx(), message_id=f"m{n}", direction="inbound", author="Ada",
                         content=f"Secret {n}")  # fmt: skip
    api.runtime.app.record(ada, talk)
    url = f"/v1/conversations/{talk.id}"

    read = client.get(url, headers=sales).json()
    (snapshot,) = api.runtime.app.snapshot_recorder.select_events(talk.id)
    api.app.state.services.commands.cache.clear()  # the command loads it as a read does
    paid = {"direction": "outbound", "author": "Sam", "content": "Paid"}
    logged = client.post(f"{url}/messages", json=paid, headers=sales)
    again = client.get(url, headers=sales).json()

    assert (read["version"], len(read["messages"])) == (events, events - 1)
    assert read["messages"][-1]["content"] == f"Secret {events - 1}"
    assert (snapshot.originator_version, snapshot.topic) == (events, TAGS[Conversation])
    assert b"Secret" not in snapshot.state  # sealed, as the events hold it
    assert logged.status_code == 201, logged.text
    assert again["version"] == events + 1
    assert again["messages"][:-1] == read["messages"]
    assert again["messages"][-1]["content"] == "Paid"


def test_a_long_conversation_is_answered_in_slices_exactly_as_in_one_piece(
    client: Client, api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversation longer than a `SLICE` is opened, viewed and encoded on the loop a
    slice at a time, so that it holds the event loop only in turns. Its answer (byte for
    byte), what it masks and what the access log records are those of the same read in
    one piece."""
    ada = Customer.register(
        ctx(), customer_id=uuid4(), name="Ada", email="ada@example.com", owner_department="sales"
    )
    talk = Conversation.open(
        ctx(), conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
    )
    for n in range(SLICE + 1):
        talk.log_message(ctx(), message_id=f"m{n}", direction="inbound", author="Ada",
                         content=f"Secret {n}")  # fmt: skip
    talk.correct_message(ctx(), message_id="m3", content="Fixed", reason="typo")
    api.runtime.app.record(ada, talk)
    url = f"/v1/conversations/{talk.id}"
    manager = api.token("max", "sales", "manager")
    analyst = api.token("ann", "analytics", "analyst")
    log = api.app.state.services.access_log

    def answers() -> tuple[bytes, bytes, list[tuple[str, list[str]]]]:
        shown, masked = (client.get(url, headers=h) for h in (manager, analyst))
        assert (shown.status_code, masked.status_code) == (200, 200), shown.text
        log.flush()
        stored = [decode(p, r).record for p, r in log.store.select(limit=1000)]
        return shown.content, masked.content, [(r.principal, r.fields) for r in stored]

    sliced = answers()
    monkeypatch.setattr(conversation_reads, "SLICE", len(talk.messages))
    in_one_piece = answers()

    shown, masked, recorded = sliced
    assert (shown, masked) == in_one_piece[:2]
    paths = ["messages.*.author", "messages.*.content", "messages.*.reason", "subject"]
    assert recorded == [("max", paths)]  # the correction's reason too
    assert in_one_piece[2] == recorded * 2  # an analyst's reads are masked: no record
    read = msgspec.json.decode(shown)
    contents = [m["content"] for m in read["messages"]]
    assert contents == [f"Secret {n}" if n != 3 else "Fixed" for n in range(SLICE + 1)]
    assert {m["content"] for m in msgspec.json.decode(masked)["messages"]} == {MASKED}
    assert shown == msgspec.json.encode(conversation_view(talk, EVERYTHING_VISIBLE, None))


def test_a_customer_with_many_orders_is_viewed_off_the_loop_exactly_as_on_it(
    client: Client, api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A customer holding more than `LOOP_ORDERS` orders is viewed on a worker thread
    (10,000 held the loop ~8 ms a read); the answer is the same read's on the loop."""
    ada = Customer.register(
        ctx(), customer_id=uuid4(), name="Ada", email="ada@example.com", owner_department="sales"
    )
    for n in range(3):
        ada.record_order(ctx(), order_id=f"o{n}", amount="12.50", currency="EUR")
    api.runtime.app.record(ada)
    manager = api.token("max", "sales", "manager")
    on_loop: list[bool] = []

    def viewed(*args: Any) -> Any:
        on_loop.append(_on_a_loop())
        return customer_view(*args)

    monkeypatch.setattr(reads, "customer_view", viewed)
    answers = []
    for limit in (2, 3):  # fewer than its orders, then as many
        monkeypatch.setattr(reads, "LOOP_ORDERS", limit)
        answer = client.get(f"/v1/customers/{ada.id}", headers=manager)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    assert on_loop == [False, True]
    assert answers[0] == answers[1]
    assert [o["order_id"] for o in answers[0]["orders"]] == ["o0", "o1", "o2"]
    assert answers[0]["email"] == "ada@example.com"


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
