"""`GET /v1/events/stream`: a department sees its events as they happen, masked, and
never another department's private events. Bounded: each stream reads N events, closes.
Embedded mode, served by a real uvicorn (the in-process client buffers whole responses).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.processes import eventually
from tests.integration.api_support import EmbeddedApi, embedded_api, served
from tests.integration.stream_support import Stream, about

Event = tuple[str, int, dict[str, Any]]  # type, position, data


@pytest.fixture
def http(api: EmbeddedApi) -> Iterator[httpx.Client]:
    with served(api.app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def _read(lines: Iterator[str], count: int) -> list[Event]:
    """The next `count` server-sent events (type, id, decoded data)."""
    events: list[Event] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        elif "data" in fields:
            events.append((fields["event"], int(fields["id"]), json.loads(fields["data"])))
            fields = {}
            if len(events) == count:
                return events
    raise AssertionError(f"stream ended after {len(events)} of {count} events")


def _post(http: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    response = http.post(url, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def test_sales_sees_its_events_live_and_not_support_private_ones(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    sales, support = api.token("sam", "sales", "agent"), api.token("sue", "support", "agent")
    with http.stream("GET", "/v1/events/stream", headers=sales) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        private = _post(http, "/v1/customers", {"name": "Private", "email": "p@x.com"}, support)
        ada = _post(http, "/v1/customers", {"name": "Ada", "email": "ada@x.com"}, sales)
        lines = stream.iter_lines()
        first = _read(lines, 1)
        opened = {"customer_id": ada, "channel": "email", "subject": "Quote"}
        conversation = _post(http, "/v1/conversations", opened, sales)  # while streaming
        live = _read(lines, 1)
    assert [(kind, data["originator_id"]) for kind, _, data in first + live] == [
        ("CustomerRegistered", ada),
        ("ConversationOpened", conversation),
    ]
    assert first[0][2]["email"] == "ada@x.com"  # agents see their customers' contacts
    assert all(data["originator_id"] != private for _, _, data in first + live)


def test_analyst_stream_is_masked_and_department_agents_stay_in_their_department(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    sales, analyst = api.token("sam", "sales", "agent"), api.token("ann", "analytics", "analyst")
    url = "/v1/events/stream?department=sales"
    with http.stream("GET", url, headers=analyst) as stream:
        ada = _post(http, "/v1/customers", {"name": "Ada", "email": "ada@x.com"}, sales)
        opened = {"customer_id": ada, "channel": "email", "subject": "Quote"}
        conversation = _post(http, "/v1/conversations", opened, sales)
        message = {"direction": "inbound", "author": "Ada", "content": "Hello there"}
        _post(http, f"/v1/conversations/{conversation}/messages", message, sales)
        events = _read(stream.iter_lines(), 3)
    assert [kind for kind, _, _ in events] == [
        "CustomerRegistered",
        "ConversationOpened",
        "MessageLogged",
    ]
    assert [position for _, position, _ in events] == [1, 2, 3]
    assert events[0][2]["email"] == "[masked]"
    assert events[2][2]["content"] == "[masked]"
    refused = http.get("/v1/events/stream?department=support", headers=sales)
    assert refused.status_code == 403
    assert refused.json()["rule"] == "agent:events.read:own_department"


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_replaying_after_a_position_beyond_the_head_is_a_400(
    store: str, pg_url: str, tmp_path: Path
) -> None:
    """No event could ever follow it: on SQLite a position past 64 bits broke the stream
    after its 200 (an OverflowError in the page query), on PostgreSQL it waited forever.
    One past what a bigint holds is refused before the head is read, as any integer a
    request carries is (`request_guard`)."""
    with (
        embedded_api(tmp_path, database_url=pg_url if store == "postgres" else None) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        auditor = api.token("aud", "audit", "auditor")
        _post(http, "/v1/customers", {"name": "Ada"}, api.token("sam", "sales", "agent"))
        beyond = {2: "beyond the event store's head", 2**63: "must be at most", 10**30: "at most"}
        for after, why in beyond.items():
            with http.stream("GET", f"/v1/events/stream?after={after}", headers=auditor) as sent:
                assert sent.status_code == 400, after
                sent.read()
                assert why in sent.json()["detail"]
        with http.stream("GET", "/v1/events/stream?after=0", headers=auditor) as replay:
            assert [kind for kind, _, _ in _read(replay.iter_lines(), 1)] == ["CustomerRegistered"]


NOT_AS_SENT = ("1e0", "1E0", "1.0", "10e-1", "-0", "-0.0", "0e5", "+1", "01", "1_0")
"""Positions the framework read as the JSON numbers 1 and 0, or Python's `int` as 1:
the stream writes each event's id in ASCII digits, and an EventSource sends back exactly
the last one it got (the SSE standard), so none of these came from one."""


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_last_event_id_or_after_not_written_as_an_event_id_is_a_400(
    store: str, pg_url: str, tmp_path: Path
) -> None:
    """`Last-Event-ID: 1e0` or `?after=-0` replayed from there (`-0` streamed everything
    from the start), for any role: refused as malformed, as `abc` is, naming the value."""
    with (
        embedded_api(tmp_path, database_url=pg_url if store == "postgres" else None) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        auditor = api.token("aud", "audit", "auditor")
        _post(http, "/v1/customers", {"name": "Ada"}, api.token("sam", "sales", "agent"))
        url = "/v1/events/stream"
        for position in NOT_AS_SENT:
            for sent in (
                {"params": {"after": position}},
                {"headers": {"Last-Event-ID": position}},
            ):
                headers = auditor | sent.get("headers", {})
                with http.stream("GET", url, params=sent.get("params"), headers=headers) as got:
                    assert got.status_code == 400, (position, sent)
                    got.read()
                    detail = got.json()["detail"]
                    assert "must be a whole number in ASCII digits" in detail, detail
                    assert repr(position) in detail
        with http.stream("GET", url, headers=auditor | {"Last-Event-ID": "0"}) as replay:
            assert [kind for kind, _, _ in _read(replay.iter_lines(), 1)] == ["CustomerRegistered"]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_reconnecting_eventsource_resumes_after_its_last_event_id_if_it_may_read_history(
    store: str, pg_url: str, tmp_path: Path
) -> None:
    """`Last-Event-ID` resumes as `after=` does for an auditor; an agent's stream starts
    at the head as on its first connection (replaying what passed is reading history,
    and a 403 would end its EventSource); a malformed one is a 400 for anyone."""
    with (
        embedded_api(tmp_path, database_url=pg_url if store == "postgres" else None) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        auditor, sales = api.token("aud", "audit", "auditor"), api.token("sam", "sales", "agent")
        _post(http, "/v1/customers", {"name": "Ada"}, sales)
        second = _post(http, "/v1/customers", {"name": "Bob"}, sales)
        url = "/v1/events/stream"

        with http.stream("GET", url, headers=auditor | {"Last-Event-ID": "1"}) as resumed:
            replayed = _read(resumed.iter_lines(), 1)
        with http.stream("GET", url, headers=sales | {"Last-Event-ID": "0"}) as agent:
            third = _post(http, "/v1/customers", {"name": "Cy"}, sales)
            live = _read(agent.iter_lines(), 1)
        for hostile in ("abc", "-1", "1.5", ""):
            for who in (auditor, sales):
                refused = http.get(url, headers=who | {"Last-Event-ID": hostile})
                assert refused.status_code == 400, (hostile, refused.text)
        with http.stream("GET", url, headers=auditor | {"Last-Event-ID": str(10**30)}) as sent:
            assert sent.status_code == 400  # beyond the head, as after= is
            sent.read()

    assert [(position, data["originator_id"]) for _, position, data in replayed] == [(2, second)]
    assert [data["originator_id"] for _, _, data in live] == [third]  # nothing replayed


def test_a_principal_holds_a_few_streams_open_and_gets_a_slot_back_when_one_closes(
    tmp_path: Path,
) -> None:
    """One principal holding 1,500 idle streams kept the API busier than a core: each polls.
    And a limit per principal alone let the number of principals decide how many streams,
    each polling and holding a page and its aggregates, one process took on."""
    settings = {"CRM_STREAMS_PER_PRINCIPAL": "2", "CRM_STREAMS_MAX": "3"}
    with (
        embedded_api(tmp_path, settings=settings) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        sam, ann = api.token("sam", "sales", "agent"), api.token("ann", "sales", "agent")
        url = "/v1/events/stream"
        with http.stream("GET", url, headers=sam) as first:
            with http.stream("GET", url, headers=sam) as second:
                assert (first.status_code, second.status_code) == (200, 200)
                refused = http.get(url, headers=sam)
                assert refused.status_code == 429
                assert refused.json()["type"].endswith("/too-many-streams")
                assert refused.headers["retry-after"] == "5"
                with http.stream("GET", url, headers=ann) as others:
                    assert others.status_code == 200  # a slot is a principal's own
                    full = http.get(url, headers=api.token("bob", "sales", "agent"))
                    assert full.status_code == 503  # ...of the process's CRM_STREAMS_MAX
                    assert full.json()["type"].endswith("/streams-full")
                    assert full.headers["retry-after"] == "5"
            # `second` closed: the server notices, and sam may open one again

            def reopened() -> bool | None:
                with http.stream("GET", url, headers=sam) as again:
                    return again.status_code == 200 or None

            eventually(reopened, within=10, what="the closed stream's slot back")


def test_streams_stuck_on_a_locked_event_store_leave_the_api_ready_and_go_on_after_it(
    pg_url: str, tmp_path: Path
) -> None:
    """Each open stream polls the event store on a worker thread. With `crm_events`
    locked (a writer stalled holding its lock), 48 streams wait on it, more than the
    threads anyio lends a process (40) and the connections of the event store's pool
    (16): `/readyz`, whose probe has a pool of its own, still answers at once (the read
    timeout is 5 s), and once the lock is gone the streams go on by themselves."""
    settings = {"CRM_STREAMS_PER_PRINCIPAL": "64", "CRM_STREAMS_MAX": "64"}
    with (
        embedded_api(tmp_path, database_url=pg_url, settings=settings) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=5)) as http,
        psycopg.connect(pg_url) as locker,
    ):
        sam = api.token("sam", "sales", "agent")
        streams = [Stream(base, "/v1/events/stream", sam) for _ in range(48)]
        try:
            assert {stream.status for stream in streams} == {200}
            locker.execute("LOCK TABLE crm_events IN ACCESS EXCLUSIVE MODE")

            def waiting() -> int | None:
                row = locker.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query ILIKE '%crm_events%'"
                ).fetchone()
                return row[0] if row and row[0] else None

            eventually(waiting, within=10, what="streams waiting for the locked event store")
            time.sleep(2)  # every stream has polled since (each polls twice a second)
            ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["event_store"] == "ok"
            locker.rollback()
            ann = api.token("ann", "sales", "agent")  # the streams still poll, and go on
            body = {"name": "Ann", "email": "a@x.de"}
            posted = http.post("/v1/customers", json=body, headers=ann)
            assert posted.status_code == 201, posted.text
            streams[0].until(about(posted.json()["id"]), "the new customer on a stream")
        finally:
            for stream in streams:
                stream.close()
