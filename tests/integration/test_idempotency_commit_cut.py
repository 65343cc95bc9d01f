"""One Idempotency-Key, one command stored, when PostgreSQL went away as a batch committed.

Red team (F1): a batch committed, its answer was lost with the connection, and the
database stayed out of reach for longer than the batch writer's reconnects (~2 s). The
command answered 503 `event-store-unavailable`, the API released its key ("a failed
command stored no event"), and the client's retry with the same key ran it a second
time: two `MessageLogged` under one key, two customers from one keyed registration.
Now the key stays held after a failure that does not prove the command stored nothing
(`services.api.command_outcome`): a retry answers 409 `idempotency-key-in-use` until the
lease runs out, then takes the key over and answers what the event store holds.

Real PostgreSQL through a TCP proxy (`pg_commit_cut.CommitCut`) that lets the locked
insert commit, loses its answer and refuses connections for `CUT_SECONDS`; the real API
behind uvicorn. The API's idempotency clock is moved past the lease, not slept through.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from litestar.testing import TestClient
from psycopg.sql import SQL

from domain import codec
from domain.base import DomainEvent
from services.idempotency import Idempotency
from services.pg_batch_recorder import BatchInsertRecorder
from tests.fake_clock import Clock
from tests.integration.api_support import EmbeddedApi, embedded_api, served
from tests.integration.pg_commit_cut import CommitCut

pytestmark = pytest.mark.integration

CUT_SECONDS = 4.0
"""Past the batch writer's reconnects (10 attempts, 0.2 s apart): it gives up."""
MESSAGE = {"direction": "inbound", "author": "Ann Lee", "content": "please refund order 7"}
Headers = dict[str, str]


@pytest.fixture
def cut(pg_url: str) -> Iterator[CommitCut]:
    parts = urlsplit(pg_url)
    proxy = CommitCut((parts.hostname or "127.0.0.1", parts.port or 5432), CUT_SECONDS)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def api(tmp_path: Path, pg_url: str, cut: CommitCut) -> Iterator[EmbeddedApi]:
    """The API, all its connections to PostgreSQL through the proxy."""
    parts = urlsplit(pg_url)
    through = f"{parts.username}:{parts.password}@127.0.0.1:{cut.port}"
    plain = "sslmode=disable&gssencmode=disable"  # the proxy forwards start-up unread
    url = urlunsplit(parts._replace(netloc=through, query=plain))
    with embedded_api(tmp_path, database_url=url) as embedded:
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[httpx.Client]:
    """A client of the API behind a real uvicorn (commands in flight at once)."""
    with served(api.app) as base, httpx.Client(base_url=base, timeout=60) as http:
        yield http


@pytest.fixture
def clock(api: EmbeddedApi) -> Clock:
    """The API's idempotency clock, moved past a lease by hand (`lease_run_out`)."""
    keys: Idempotency = api.app.state.services.idempotency
    keys.clock = moved = Clock(keys.clock())
    return moved


def lease_run_out(api: EmbeddedApi, clock: Clock) -> None:
    clock.now += api.app.state.services.idempotency.lease_seconds + 1


def reachable_again(cut: CommitCut) -> None:
    assert cut.cut.wait(30), "the proxy cut no insert"
    while cut.refusing():
        time.sleep(0.1)


def created(client: httpx.Client, path: str, body: dict[str, str], headers: Headers) -> str:
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def conversation(client: httpx.Client, agent: Headers, name: str = "Ann Lee") -> str:
    customer = created(client, "/v1/customers", {"name": name}, agent)
    opened = {"customer_id": customer, "channel": "phone", "subject": "refund"}
    return created(client, "/v1/conversations", opened, agent)


def keyed_events(api: EmbeddedApi, owner: str, key: str) -> list[tuple[DomainEvent, int]]:
    """Every stored event emitted under `owner`'s `key`, with its position."""
    digest = api.app.state.services.idempotency.event_key(owner, key)
    stored = api.runtime.app.recorder.select_notifications(1, 10_000)
    events = [(codec.sealed_event(n), n.id) for n in stored]
    return [(event, position) for event, position in events if event.idempotency_key == digest]


def stored_answer(api: EmbeddedApi, owner: str, key: str) -> dict[str, Any]:
    """The answer of the one event stored under `owner`'s `key` (one per command here)."""
    events = keyed_events(api, owner, key)
    assert len(events) == 1, f"{len(events)} events stored under {key!r}"
    event, position = events[0]
    answer = {"id": str(event.originator_id), "version": event.originator_version}
    message = getattr(event, "message_id", None)
    return answer | {"position": position} | ({"message_id": message} if message else {})


def assert_in_use(answer: httpx.Response) -> None:
    assert answer.status_code == 409, answer.text
    assert answer.json()["reason"] == "idempotency-key-in-use", answer.text


def assert_recovered(
    client: httpx.Client, api: EmbeddedApi, clock: Clock, *sent: tuple[str, Any, Headers]
) -> None:
    """Within the lease each retry is 409 `idempotency-key-in-use`; past it, each retry
    and the next answer what the one event stored under its key says, storing nothing."""
    for path, body, headers in sent:
        assert_in_use(client.post(path, json=body, headers=headers))
    lease_run_out(api, clock)
    for path, body, headers in sent:
        retry = client.post(path, json=body, headers=headers)
        again = client.post(path, json=body, headers=headers)
        stored = stored_answer(api, "sam", headers["Idempotency-Key"])
        assert (retry.status_code, retry.json()) == (201, stored), retry.text
        assert (again.status_code, again.json()) == (201, stored)


def problem(answer: httpx.Response) -> str:
    """A 503's problem type, by its last part."""
    assert answer.status_code == 503, answer.text
    slug: str = answer.json()["type"].rsplit("/", 1)[-1]
    return slug


def assert_outcome_unknown(answer: httpx.Response) -> None:
    """The answer of a command whose batch went out and whose commit's answer was lost:
    it may be stored (an unkeyed retry may store it twice)."""
    assert problem(answer) == "outcome-unknown", answer.text


def test_a_message_whose_commit_lost_its_answer_is_stored_once(
    api: EmbeddedApi, client: httpx.Client, cut: CommitCut, clock: Clock
) -> None:
    agent = api.token("sam", "sales", "agent")
    talk = conversation(client, agent)
    sent = (f"/v1/conversations/{talk}/messages", MESSAGE, agent | {"Idempotency-Key": "log-1"})
    cut.arm()
    first = client.post(sent[0], json=sent[1], headers=sent[2])
    assert cut.cut_ids == {uuid.UUID(talk)}  # its batch committed; the answer was lost
    assert_outcome_unknown(first)
    reachable_again(cut)
    assert len(keyed_events(api, "sam", "log-1")) == 1

    assert_recovered(client, api, clock, sent)
    assert stored_answer(api, "sam", "log-1")["version"] == 2  # opened, then the message
    shown = client.get(f"/v1/conversations/{talk}", headers=agent).json()["messages"]
    assert [m["content"] for m in shown] == [MESSAGE["content"]]


def test_a_registration_whose_commit_lost_its_answer_makes_one_customer(
    api: EmbeddedApi, client: httpx.Client, cut: CommitCut, clock: Clock
) -> None:
    """The retry finds the customer by the id the key's reservation derives: the key was
    kept, so its reservation too (released, the retry's new one named a new customer)."""
    agent = api.token("sam", "sales", "agent")
    body = {"name": "Zoe Quinn", "email": "zoe@example.com"}
    sent = ("/v1/customers", body, agent | {"Idempotency-Key": "signup-42"})
    cut.arm()
    assert_outcome_unknown(client.post(sent[0], json=sent[1], headers=sent[2]))
    reachable_again(cut)
    [(registered, _)] = keyed_events(api, "sam", "signup-42")
    assert cut.cut_ids == {registered.originator_id}

    assert_recovered(client, api, clock, sent)
    assert stored_answer(api, "sam", "signup-42")["id"] == str(registered.originator_id)


def sent_together(
    api: EmbeddedApi,
    base_url: str,
    cut: CommitCut,
    pg_url: str,
    sent: list[Any],
    *,
    ahead_on: str,
) -> list[httpx.Response]:
    """`sent` queued behind a batch held at the event store's lock (another connection
    holds it: a message on conversation `ahead_on`), so that they are written together
    once it is let go: the proxy cuts the first batch of two commands or more."""
    recorder = api.runtime.app.recorder
    assert isinstance(recorder, BatchInsertRecorder)
    lock = SQL("LOCK TABLE {} IN SHARE MODE").format(recorder.events_table)

    def post(path: str, body: Any, headers: Headers) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            return http.post(path, json=body, headers=headers)

    ahead: Future[httpx.Response]
    with ThreadPoolExecutor(len(sent) + 1) as pool, psycopg.connect(pg_url) as blocker:
        blocker.execute(lock)
        unkeyed = {k: v for k, v in sent[0][2].items() if k != "Idempotency-Key"}
        ahead = pool.submit(post, f"/v1/conversations/{ahead_on}/messages", MESSAGE, unkeyed)
        time.sleep(0.5)
        answers = [pool.submit(post, *request) for request in sent]
        time.sleep(1.5)  # decided, and queued behind the batch at the lock
        cut.arm(least=2)
        blocker.commit()
        assert ahead.result().status_code == 201
        return [answer.result() for answer in answers]


def test_keyed_commands_sharing_a_lost_commit_are_each_stored_once(
    api: EmbeddedApi, client: httpx.Client, cut: CommitCut, clock: Clock, pg_url: str
) -> None:
    """Four keyed commands, two messages and two registrations, written together: those
    of the batch cut committed, any later one did not (its reconnects were refused).
    Each is stored once, and each retry answers it."""
    agent = api.token("sam", "sales", "agent")
    talks = [conversation(client, agent, name) for name in ("Ann Lee", "Bob Ray", "Cy Tam")]
    sent = [
        (f"/v1/conversations/{talks[0]}/messages", MESSAGE, agent | {"Idempotency-Key": "m-0"}),
        (f"/v1/conversations/{talks[1]}/messages", MESSAGE, agent | {"Idempotency-Key": "m-1"}),
        ("/v1/customers", {"name": "Zoe Quinn"}, agent | {"Idempotency-Key": "c-0"}),
        ("/v1/customers", {"name": "Yan Ito"}, agent | {"Idempotency-Key": "c-1"}),
    ]
    firsts = sent_together(api, str(client.base_url), cut, pg_url, sent, ahead_on=talks[2])
    reachable_again(cut)
    assert len(cut.cut_ids) >= 2  # commands sharing the commit whose answer was lost
    failed, problems = [], []
    for request, first in zip(sent, firsts, strict=True):
        if first.status_code == 201:  # written after the outage
            assert first.json() == stored_answer(api, "sam", request[2]["Idempotency-Key"])
        else:
            problems.append(problem(first))
            failed.append(request)
    # those of the batch cut may be stored; a later one never went out
    assert "outcome-unknown" in problems, problems
    assert set(problems) <= {"outcome-unknown", "event-store-unavailable"}, problems
    assert_recovered(client, api, clock, *failed)
    stored = {
        uuid.UUID(stored_answer(api, "sam", request[2]["Idempotency-Key"])["id"])
        for request in sent
    }
    assert cut.cut_ids <= stored


def test_a_retry_spelling_the_id_in_upper_case_gets_the_first_answer(tmp_path: Path) -> None:
    """The fingerprint names the path as the route parsed it, not as sent (was a 409
    `idempotency-key-reused`)."""
    with embedded_api(tmp_path) as api, TestClient(api.app) as client:
        agent = api.token("sam", "sales", "agent")
        made = client.post("/v1/customers", json={"name": "Ann Lee"}, headers=agent)
        customer = made.json()["id"]
        keyed = agent | {"Idempotency-Key": "tag-1"}
        path = "/v1/customers/{}/tags"
        first = client.post(path.format(customer), json={"tag": "vip"}, headers=keyed)
        retry = client.post(path.format(customer.upper()), json={"tag": "vip"}, headers=keyed)
        assert first.status_code == 200, first.text
        assert (retry.status_code, retry.json()) == (200, first.json()), retry.text
        manager = api.token("max", "sales", "manager")  # agents read no history
        history = client.get(f"/v1/customers/{customer}/history", headers=manager).json()
        assert [event["type"] for event in history].count("CustomerTagged") == 1
        other = client.post(path.format(customer.upper()), json={"tag": "new"}, headers=keyed)
        assert other.json()["reason"] == "idempotency-key-reused", other.text
