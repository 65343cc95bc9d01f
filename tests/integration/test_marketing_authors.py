"""Marketing staff never read the author of a conversation's entries (red team s31 F1).

An inbound message's author is the customer as written: their e-mail, their phone, a name.
No consent covers a phone, and nothing says which an author is, so the access model hides
every author from marketing agents and managers (`services.access.fields.MARKETING_AUTHORS`),
whatever the customer's consent and whichever the direction. Each path shows it masked:
the conversation's `GET`, each `/messages` page, the customer's timeline, the live event
stream, a replay of it, and the conversation's history; the events' `actor` still names
who acted. Admins and auditors read the same authors whole. On the embedded store and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.base import MASKED
from tests.integration.api_support import EmbeddedApi, embedded_api, served
from tests.integration.stream_support import Event, Stream

EMAIL, PHONE = "nora@example.com", "+49 30 5550001"
AUTHORS = [EMAIL, PHONE, "sam", "mia"]  # two inbound, sales' note, marketing's reply
Headers = dict[str, str]


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedApi]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with embedded_api(tmp_path, database_url=url) as embedded:
        embedded.app.state.services.stream_poll_seconds = 0.02
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[httpx.Client]:
    with served(api.app) as base, httpx.Client(base_url=base, timeout=20) as http:
        yield http


def _send(client: httpx.Client, who: Headers, method: str, url: str, body: Any = None) -> Any:
    answer = client.request(method, url, json=body, headers=who)
    assert answer.is_success, (method, url, answer.text)
    return answer.json()


def _conversation(client: httpx.Client, sales: Headers, marketing: Headers) -> tuple[str, str]:
    """Nora (sales', shared with marketing, no e-mail consent) wrote twice, as her e-mail
    and her phone; a sales agent noted it and handed the conversation to marketing, whose
    agent answered. Then a tag on her ends the streams."""
    body = {"name": "Nora", "email": EMAIL, "phone": PHONE, "owner_department": "sales"}
    customer = _send(client, sales, "POST", "/v1/customers", body)["id"]
    _send(client, sales, "POST", f"/v1/customers/{customer}/shares", {"department": "marketing"})
    opened = {"customer_id": customer, "channel": "email", "subject": "Re: newsletter"}
    conversation = _send(client, sales, "POST", "/v1/conversations", opened)["id"]
    messages = f"/v1/conversations/{conversation}/messages"
    for author, text in ((EMAIL, "please call me back"), (PHONE, "voicemail")):
        inbound = {"direction": "inbound", "author": author, "content": text}
        _send(client, sales, "POST", messages, inbound)
    _send(client, sales, "POST", f"/v1/conversations/{conversation}/notes", {"content": "vip"})
    handoff = {"to_department": "marketing"}
    _send(client, sales, "POST", f"/v1/conversations/{conversation}/handoffs", handoff)
    reply = {"direction": "outbound", "author": "mia", "content": "we will"}
    _send(client, marketing, "POST", messages, reply)
    _send(client, sales, "POST", f"/v1/customers/{customer}/tags", {"tag": "end"})
    return customer, conversation


def _authors(documents: list[dict[str, Any]]) -> list[str]:
    return [document["author"] for document in documents if document.get("author")]


def _paged(client: httpx.Client, who: Headers, conversation: str) -> list[dict[str, Any]]:
    """Every `/messages` page, one message a page."""
    messages, after = [], ""
    while after is not None:
        url = f"/v1/conversations/{conversation}/messages?limit=1"
        page = _send(client, who, "GET", url + (f"&after={after}" if after else ""))
        messages += page["messages"]
        after = page["next_cursor"]
    return messages


def _streamed(stream: Stream) -> list[Event]:
    try:
        return stream.until(lambda event: event[2].get("tag") == "end", "the tag `end`")
    finally:
        stream.close()


def _logged(events: list[Event]) -> list[dict[str, Any]]:
    return [data for kind, _, data in events if kind in ("MessageLogged", "InternalNoteAdded")]


def test_marketing_staff_read_no_author_on_any_path(api: EmbeddedApi, client: httpx.Client) -> None:
    sales, auditor = api.token("sam", "sales", "manager"), api.token("aud", "audit", "auditor")
    agent, manager = api.token("mia", "marketing", "agent"), api.token("mo", "marketing", "manager")
    base = str(client.base_url)
    live = Stream(base, "/v1/events/stream", agent)
    customer, conversation = _conversation(client, sales, agent)
    whole, masked = AUTHORS, [MASKED] * len(AUTHORS)

    api.catch_up()
    admin = api.token("root", "it", "admin")
    for who, authors in ((agent, masked), (manager, masked), (admin, whole), (auditor, whole)):
        read = _send(client, who, "GET", f"/v1/conversations/{conversation}")
        assert _authors(read["messages"]) == authors
        assert [m["content"] for m in read["messages"]][-1] == "we will"  # the rest is read
        assert _authors(_paged(client, who, conversation)) == authors
        timeline = _send(client, who, "GET", f"/v1/customers/{customer}/timeline")["items"]
        assert _authors(timeline) == authors
    customer_read = _send(client, agent, "GET", f"/v1/customers/{customer}")
    assert (customer_read["email"], customer_read["phone"]) == (MASKED, MASKED)

    for who, authors in ((manager, masked), (auditor, whole)):
        history = _send(client, who, "GET", f"/v1/conversations/{conversation}/history")
        since = authors[-1:] if who is manager else authors  # a manager's: since the hand-off
        assert _authors([entry["data"] for entry in history]) == since
        replayed = _logged(_streamed(Stream(base, "/v1/events/stream?after=0", who)))
        assert _authors(replayed) == since
        assert [data["actor"] for data in replayed][-1] == "mia"
    streamed = _logged(_streamed(live))
    assert _authors(streamed) == [MASKED]  # marketing's stream: since the hand-off
    assert streamed[0]["content"] == "we will"
