"""The access log: each read that shows personal data unmasked writes exactly one record
naming the principal, the route, the customers and the fields; a masked read writes
none; records are chained, queried by auditors (HTTP and CLI), kept on a graceful stop,
and published in order to `crm.access.v1`."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from bench.databases import fresh_database
from domain.chain_walk import ChainWalk
from services.access.rules import Principal, Role
from services.access_log import AccessLog, AccessStore, decode
from services.access_log_store import PostgresAccessStore, SqliteAccessStore
from services.access_topic import AccessPublisher, access_topic, ensure_access_topic
from services.audit_kafka import read_topics
from services.bootstrap import connect_pool
from tests.integration.api_support import EmbeddedApi, embedded_api, served
from tests.integration.stream_support import Stream, about

Client = TestClient[Any]
CRM = str(Path(sys.executable).with_name("crm"))


def records(api: EmbeddedApi) -> list[Any]:
    log: AccessLog = api.app.state.services.access_log
    log.flush()
    rows = log.store.select(limit=1000)
    return [decode(position, record).record for position, record in rows]


def scenario(client: Client, api: EmbeddedApi) -> dict[str, str]:
    sales = api.token("sam", "sales", "agent")
    body = {"name": "Ada", "email": "ada@x.com", "phone": "+44 20 7946 0000"}
    customer = client.post("/v1/customers", json=body, headers=sales).json()["id"]
    opened = {"customer_id": customer, "channel": "chat", "subject": "Invoice"}
    conversation = client.post("/v1/conversations", json=opened, headers=sales).json()["id"]
    message = {"direction": "inbound", "author": "ada", "content": "hello"}
    client.post(f"/v1/conversations/{conversation}/messages", json=message, headers=sales)
    task = client.post("/v1/tasks", json={"customer_id": customer, "title": "t"}, headers=sales)
    api.catch_up()
    return {"customer": customer, "conversation": conversation, "task": task.json()["id"]}


READS = {  # route -> (path, personal fields it shows unmasked to a sales manager)
    # (history: no role that may read it sees masked data, so no masked half there)
    "GET /v1/customers/{customer_id}": ("/v1/customers/{customer}", ["email", "name", "phone"]),
    "GET /v1/conversations/{conversation_id}": (
        "/v1/conversations/{conversation}",
        ["messages.*.author", "messages.*.content", "subject"],
    ),
    "GET /v1/tasks/{task_id}": ("/v1/tasks/{task}", ["title"]),
    "GET /v1/customers/{customer_id}/history": (
        "/v1/customers/{customer}/history",
        ["email", "name", "phone"],
    ),
    "GET /v1/customers/{customer_id}/timeline": (
        "/v1/customers/{customer}/timeline",
        ["author", "content"],
    ),
    "GET /v1/departments/{department}/{view}": (
        "/v1/departments/sales/customers",
        ["email", "name", "phone"],
    ),
    "GET /v1/customers": ("/v1/customers?email=ADA@x.com", ["email", "name", "phone"]),
}


@pytest.mark.parametrize("route", sorted(READS))
def test_each_unmasked_read_writes_one_record_and_a_masked_one_none(
    client: Client, api: EmbeddedApi, route: str
) -> None:
    ids = scenario(client, api)
    before = len(records(api))
    path, fields = READS[route]
    manager = api.token("max", "sales", "manager")
    assert client.get(path.format(**ids), headers=manager).status_code == 200
    (record,) = records(api)[before:]
    assert (record.principal, record.role, record.route) == ("max", "manager", route)
    assert [str(c) for c in record.customers] == [ids["customer"]]
    assert record.fields == fields
    if route.endswith("/history"):
        return
    analyst = api.token("ann", "analytics", "analyst")
    assert client.get(path.format(**ids), headers=analyst).status_code == 200
    assert len(records(api)) == before + 1  # analysts see everything masked: no record


@pytest.mark.parametrize("route", sorted(READS))
def test_a_read_not_recorded_works_out_nothing_of_what_it_shows(
    client: Client, api: EmbeddedApi, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording off (`CRM_ACCESS_LOG=off`, or switched off): the read answers as before
    and pays nothing for the log, so the benchmark's switch measures all it costs."""
    ids = scenario(client, api)
    before = len(records(api))

    def not_asked(*args: object) -> list[str]:
        raise AssertionError("worked out what a read shows while nothing is recorded")

    monkeypatch.setattr("services.api.reads.revealed", not_asked)
    monkeypatch.setattr("services.api.list_reads.rows_shown", not_asked)
    api.app.state.services.access_log.recording = False
    path, _ = READS[route]
    manager = api.token("max", "sales", "manager")
    assert client.get(path.format(**ids), headers=manager).status_code == 200
    assert len(records(api)) == before


def test_auditors_query_the_log_by_customer_and_principal(client: Client, api: EmbeddedApi) -> None:
    ids = scenario(client, api)
    manager, auditor = api.token("max", "sales", "manager"), api.token("aud", "audit", "auditor")
    client.get(f"/v1/customers/{ids['customer']}", headers=manager)
    client.get(f"/v1/tasks/{ids['task']}", headers=manager)
    records(api)
    found = client.get(
        f"/v1/audit/access?customer={ids['customer']}&principal=max", headers=auditor
    )
    assert found.status_code == 200, found.text
    routes = [item["record"]["route"] for item in found.json()["items"]]
    assert routes == ["GET /v1/customers/{customer_id}", "GET /v1/tasks/{task_id}"]
    nobody = client.get("/v1/audit/access?principal=nobody", headers=auditor).json()
    assert nobody["items"] == []
    refused = client.get("/v1/audit/access", headers=manager)
    assert (refused.status_code, refused.json()["rule"]) == (403, "manager:audit.read:denied")


def test_a_graceful_stop_keeps_every_queued_record(tmp_path: Path) -> None:
    with embedded_api(tmp_path) as api:
        with TestClient(app=api.app) as client:
            ids = scenario(client, api)
            manager = api.token("max", "sales", "manager")
            for _ in range(20):
                client.get(f"/v1/customers/{ids['customer']}", headers=manager)
        # the client's exit ran the app's shutdown: the queue was stored, none pending
        with sqlite3.connect(tmp_path / "access.db") as db:
            (stored,) = db.execute("SELECT count(*) FROM crm_access_log").fetchone()
        assert stored >= 20


def test_the_cli_lists_a_customers_records_and_verify_access_finds_tampering(
    tmp_path: Path,
) -> None:
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        ids = scenario(client, api)
        manager = api.token("max", "sales", "manager")
        for path in ("/v1/customers/{customer}", "/v1/tasks/{task}"):
            client.get(path.format(**ids), headers=manager)
    env = {"CRM_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    listed = crm(env, "audit", "access", ids["customer"])
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 2
    assert crm(env, "audit", "verify-access").returncode == 0
    with sqlite3.connect(tmp_path / "access.db") as db:
        db.execute(
            "UPDATE crm_access_log SET record ="
            " CAST(replace(CAST(record AS TEXT), 'max', 'bob') AS BLOB) WHERE position = 2"
        )
    broken = crm(env, "audit", "verify-access")
    assert (broken.returncode, "edited" in broken.stderr) == (1, True), broken.stderr


def crm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [CRM, *args]
    return subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=120
    )


def test_records_are_chained_on_postgresql_and_published_in_order(
    server_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    with fresh_database(server_url, prefix="crm_access") as url:
        pool = connect_pool(url)
        try:
            store = PostgresAccessStore(pool)
            log = AccessLog(store, flush_seconds=60)
            who = Principal(name="max", department="sales", role=Role.MANAGER)
            customers = [uuid.uuid4() for _ in range(3)]
            for customer in customers:
                log.reveal(who, "GET /v1/customers/{customer_id}", {customer: ["email"]})
            log.flush()
            links = store.links(0, 1 << 62)
            assert [link[:2] for link in links] == [(1, 0), (2, 1), (3, 2)]
            ensure_access_topic(kafka_bootstrap, topic_prefix)
            publisher = AccessPublisher(store, kafka_bootstrap, topic_prefix)
            assert publisher.publish_pending() == 3
            assert publisher.publish_pending() == 0
            publisher.close()
            published = list(read_topics(kafka_bootstrap, [access_topic(topic_prefix)]))
            assert [r.key for r in published] == [b"1", b"2", b"3"]
            assert [decode(1, r.value).record.customers for r in published] == [
                [c] for c in customers
            ]
        finally:
            pool.close()


@pytest.mark.parametrize("route", sorted(READS))
def test_a_read_that_cannot_be_recorded_is_refused_and_a_masked_one_answers(
    client: Client, api: EmbeddedApi, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access log's store refuses appends (a full disk) and its queue holds as many
    records as it may: a read that would show personal data is a 503 until they are
    stored, and `/readyz` says why; a read that shows none answers as usual."""
    ids = scenario(client, api)
    before = len(records(api))
    path, _ = READS[route]
    manager = api.token("max", "sales", "manager")
    log: AccessLog = api.app.state.services.access_log

    def full(batch: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("services.access_log.PENDING_MAX", 1)
    monkeypatch.setattr(log.store, "append", full)
    assert client.get(path.format(**ids), headers=manager).status_code == 200  # queued
    with pytest.raises(OSError, match="No space left"):
        log.flush()
    refused = client.get(path.format(**ids), headers=manager)
    assert refused.status_code == 503, refused.text
    assert refused.json()["type"].endswith("/access-log-unavailable")
    assert refused.headers["Retry-After"] == "30"
    assert "ada@x.com" not in refused.text
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded"
    assert ready["checks"]["access_log"].endswith("reads of personal data are refused")
    if not route.endswith("/history"):
        analyst = api.token("ann", "analytics", "analyst")
        assert client.get(path.format(**ids), headers=analyst).status_code == 200
    monkeypatch.undo()  # space again
    log.flush()
    assert client.get(path.format(**ids), headers=manager).status_code == 200
    assert len(records(api)) == before + 2  # the queued read's record and the last one's


def test_the_event_stream_waits_while_its_reads_cannot_be_recorded(
    api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.app.state.services.stream_poll_seconds = 0.05
    sales, analyst = api.token("sam", "sales", "agent"), api.token("ann", "analytics", "analyst")
    monkeypatch.setattr("services.access_log.PENDING_MAX", 0)
    with served(api.app) as base, httpx.Client(base_url=base, timeout=10) as http:
        shown, masked = (Stream(base, "/v1/events/stream", who) for who in (sales, analyst))
        try:
            body = {"name": "Ada", "email": "ada@x.com"}
            customer = http.post("/v1/customers", json=body, headers=sales).json()["id"]
            masked.until(about(customer), "the registration, masked")
            time.sleep(0.3)  # some polls of the other stream, each refused its record
            assert not any(about(customer)(event) for event in shown.events)
            assert not shown.ended.is_set()  # it waits; it did not end
            monkeypatch.undo()
            shown.until(about(customer), "the registration, once it can be recorded")
        finally:
            shown.close()
            masked.close()
        streamed = [r for r in records(api) if r.route == "GET /v1/events/stream"]
    assert [(r.principal, [str(c) for c in r.customers]) for r in streamed] == [("sam", [customer])]


def test_the_event_stream_records_what_it_delivered_unmasked(api: EmbeddedApi) -> None:
    api.app.state.services.stream_poll_seconds = 0.05
    sales, analyst = api.token("sam", "sales", "agent"), api.token("ann", "analytics", "analyst")
    with served(api.app) as base, httpx.Client(base_url=base, timeout=10) as http:
        streams = [Stream(base, "/v1/events/stream", who) for who in (sales, analyst)]
        try:
            body = {"name": "Ada", "email": "ada@x.com"}
            customer = http.post("/v1/customers", json=body, headers=sales).json()["id"]
            for stream in streams:
                stream.until(about(customer), "the registration")
        finally:
            for stream in streams:
                stream.close()
        streamed = [r for r in records(api) if r.route == "GET /v1/events/stream"]
    assert [(r.principal, [str(c) for c in r.customers], r.fields) for r in streamed] == [
        ("sam", [customer], ["email", "name"])
    ]


@pytest.fixture(params=["postgres", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AccessStore]:
    if request.param == "sqlite":
        sqlite_store = SqliteAccessStore(tmp_path / "access.db")
        yield sqlite_store
        sqlite_store.close()
        return
    with fresh_database(request.getfixturevalue("server_url"), prefix="crm_access") as url:
        pool = connect_pool(url)
        try:
            yield PostgresAccessStore(pool)
        finally:
            pool.close()


def test_each_store_finds_a_pages_record_by_any_customer_it_names(store: AccessStore) -> None:
    """A page's record names many customers; each store files it under every one of
    them, its principal and its time, however it derives them from the record, and
    stores each record byte for byte as it chained it."""
    max_, ada = (Principal(name=n, department="sales", role=Role.MANAGER) for n in ("max", "ada"))
    page = {uuid.uuid4(): ["email", "name"] for _ in range(50)}
    first, alone = next(iter(page)), uuid.uuid4()
    log = AccessLog(store, flush_seconds=60)
    log.reveal(max_, "GET /v1/views/{department}/customers", page)
    log.flush()
    between = datetime.now(UTC)
    log.reveal(ada, "GET /v1/customers/{customer_id}", {alone: ["phone"], first: ["phone"]})
    log.flush()

    def found(**given: Any) -> list[int]:
        return [position for position, _ in store.select(**given)]

    assert all(found(customer=customer)[:1] == [1] for customer in page)
    assert found(customer=first) == [1, 2]
    assert found(customer=alone) == [2]
    assert found(customer=uuid.uuid4()) == []
    assert found(principal="max") == [1]
    assert found(principal="ada") == [2]
    assert found(end=between) == [1]
    assert found(start=between) == [2]
    assert found(customer=alone, principal="max") == []
    walk = ChainWalk()  # what `crm audit verify-access` runs: each record as chained
    assert walk.feed(store.entries(0, 1 << 62, 10), store.links(0, 1 << 62)) is None
    assert walk.count == 2
    stored = decode(1, store.select(principal="max")[0][1]).record
    assert stored.customers == sorted(page, key=lambda customer: customer.int)
    assert stored.fields == ["email", "name"]
