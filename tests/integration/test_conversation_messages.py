"""`GET /v1/conversations/{id}/messages`: a conversation's messages a page at a time, on
both stores, each as the conversation's `GET` shows it; and a long conversation's `GET`
built on the event loop a slice at a time, the long answers' slices taking turns round
the principals reading them (review F6)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar.testing import TestClient

from domain.base import MASKED
from domain.conversation import Conversation
from domain.customer import Customer
from services.api import conversation_reads
from services.api.conversation_reads import page_cursor
from tests.integration.api_support import EmbeddedApi
from tests.unit.domain.factories import ctx

Client = TestClient[Any]


def _conversation(api: EmbeddedApi, messages: int, department: str = "sales") -> Conversation:
    """A stored conversation of `messages` messages, a note, a correction and a retraction."""
    ada = Customer.register(
        ctx(), customer_id=uuid4(), name="Ada", email="a@x.org", owner_department=department
    )
    talk = Conversation.open(
        ctx(), conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
    )
    for n in range(messages):
        talk.log_message(ctx(), message_id=f"m{n}", direction="inbound", author="Ada",
                         content=f"Secret {n}")  # fmt: skip
    talk.add_note(ctx(), message_id="n0", content="Call back")
    talk.correct_message(ctx(), message_id="m1", content="Fixed", reason="typo")
    talk.retract_message(ctx(), message_id="m2", reason="wrong customer")
    api.runtime.app.record(ada, talk)
    return talk


def _all_pages(client: Client, url: str, headers: dict[str, str], limit: int) -> list[Any]:
    """Every page from the first, following `next_cursor`."""
    pages: list[Any] = []
    after = ""
    while True:
        answer = client.get(f"{url}/messages?limit={limit}{after}", headers=headers)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())
        if pages[-1]["next_cursor"] is None:
            return pages
        after = f"&after={pages[-1]['next_cursor']}"


def test_the_pages_hold_every_message_in_order_as_the_get_shows_them(
    api_on_each_store: EmbeddedApi,
) -> None:
    """Fails before: there was no such path (405, the path takes only POST)."""
    api = api_on_each_store
    talk = _conversation(api, 20)
    url = f"/v1/conversations/{talk.id}"
    manager = api.token("max", "sales", "manager")
    analyst = api.token("ann", "analytics", "analyst")
    with TestClient(app=api.app) as client:
        for headers in (manager, analyst):
            whole = client.get(url, headers=headers)
            assert whole.status_code == 200, whole.text
            pages = _all_pages(client, url, headers, limit=6)
            assert [len(page["messages"]) for page in pages] == [6, 6, 6, 3]
            assert [m for page in pages for m in page["messages"]] == whole.json()["messages"]
            assert {(p["conversation_id"], p["version"]) for p in pages} == {
                (str(talk.id), talk.version)
            }
        masked = _all_pages(client, url, analyst, limit=500)
        assert {m["content"] for m in masked[0]["messages"]} == {MASKED}
        shown = _all_pages(client, url, manager, limit=500)[0]["messages"]
        assert [m["message_id"] for m in shown] == [*(f"m{n}" for n in range(20)), "n0"]
        assert (shown[1]["content"], shown[1]["corrected"], shown[2]["retracted"]) == (
            "Fixed",
            True,
            True,
        )


def test_a_page_stops_once_it_holds_its_text(
    client: Client, api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page stops at `PAGE_TEXT` of stored text (always holding one message), and the
    next page goes on where it stopped."""
    talk = _conversation(api, 10)
    url = f"/v1/conversations/{talk.id}"
    manager = api.token("max", "sales", "manager")
    whole = client.get(url, headers=manager).json()["messages"]
    monkeypatch.setattr(conversation_reads, "PAGE_TEXT", 1)
    pages = _all_pages(client, url, manager, limit=5)
    assert [len(page["messages"]) for page in pages] == [1] * 11
    assert [m for page in pages for m in page["messages"]] == whole


def test_hostile_page_parameters_are_400s_and_unreadable_ones_404s(
    client: Client, api: EmbeddedApi
) -> None:
    talk, other = _conversation(api, 3), _conversation(api, 3)
    url = f"/v1/conversations/{talk.id}/messages"
    manager = api.token("max", "sales", "manager")
    elsewhere = api.token("sue", "support", "manager")
    forged = {
        "limit=0",
        "limit=-1",
        "limit=501",
        "limit=99999999999999999999999",
        "limit=1e3",
        "limit=x",
        "after=",
        "after=junk",
        "after=%00",
        "after=" + "A" * 81,
        "after=W10",  # []
        "after=WyJ4IiwxXQ",  # ["x",1]
        f"after={page_cursor(other.id, 1)}",  # another conversation's
        f"after={page_cursor(talk.id, 5)}",  # past its 4 entries
        f"after={page_cursor(talk.id, 0)}",  # never given: the first page has none
        "after=a&after=b",
    }
    for query in sorted(forged):
        answer = client.get(f"{url}?{query}", headers=manager)
        assert answer.status_code == 400, (query, answer.status_code, answer.text)
    last = client.get(f"{url}?after={page_cursor(talk.id, 4)}", headers=manager)
    assert (last.status_code, last.json()["messages"]) == (200, [])
    assert client.get(url, headers=elsewhere).status_code == 404
    unknown = client.get(f"/v1/conversations/{uuid4()}/messages", headers=manager)
    assert unknown.status_code == 404


def test_long_reads_are_built_on_the_loop_in_turns_round_the_principals(
    client: Client, api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two principals read a long conversation at once: every message is opened on the
    event loop's thread (no thread hop), and their slices alternate, so neither read
    holds the loop for more than a slice at a time while the other waits. Fails before:
    a long conversation was opened on a worker thread, one read after the other."""
    monkeypatch.setattr(conversation_reads, "SLICE", 4)
    talks = [_conversation(api, 30), _conversation(api, 30)]
    readers = [api.token("max", "sales", "manager"), api.token("mia", "sales", "manager")]
    opened: list[tuple[UUID, bool]] = []  # whose value, on the loop's thread
    current = api.app.state.services.current
    opener = current.opener
    arrived: list[asyncio.Future[None]] = []

    async def both_arrived(subject: UUID) -> Callable[[str], str]:
        """Each read waits here until both are under way, then opens as it did."""
        arrived.append(asyncio.get_running_loop().create_future())
        if len(arrived) == len(talks):
            for waiter in arrived:
                waiter.set_result(None)
        await arrived[-1]
        loop_thread = threading.get_ident()
        opens = await opener(subject)

        def recorded(value: str) -> str:
            opened.append((subject, threading.get_ident() == loop_thread))
            opened_value: str = opens(value)
            return opened_value

        return recorded

    monkeypatch.setattr(current, "opener", both_arrived)
    with ThreadPoolExecutor(2) as pool:
        urls = [f"/v1/conversations/{talk.id}" for talk in talks]
        answers = list(pool.map(lambda u, h: client.get(u, headers=h), urls, readers))
    assert [a.status_code for a in answers] == [200, 200]
    assert all(on_loop for _, on_loop in opened)
    subjects = [subject for subject, _ in opened]
    switches = sum(a != b for a, b in itertools.pairwise(subjects))
    assert switches >= 30 // 4  # about one a slice, not one in all
