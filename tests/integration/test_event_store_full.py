"""PostgreSQL refusing the event insert for a full disk (review F3, F4): a definitive
503 `storage-full` at once, nothing stored, no position used, the Idempotency-Key
released (a keyed retry runs the command, not a 409), and `/readyz` degraded with a
`writes` check saying so until a command commits again.

The refusal is the server's own answer, made deterministic: a statement trigger on the
events table raises SQLSTATE disk_full (53100), as PostgreSQL does when it cannot
extend a file, on the connection the API's batch writer keeps (it stays open). Before
the fix the writer took it for a lost connection, reconnected ten times (~2 s) and
answered 503 `outcome-unknown`, keeping the key for its lease (409s meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg.sql import SQL, Identifier

from tests.integration.api_support import EmbeddedApi, embedded_api

pytestmark = pytest.mark.integration

_FULL = """
CREATE FUNCTION crm_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file: No space left on device'
        USING ERRCODE = 'disk_full';
END $$"""
_TRIGGER = (
    "CREATE TRIGGER crm_test_disk_full BEFORE INSERT ON {table}"
    " FOR EACH STATEMENT EXECUTE FUNCTION crm_test_disk_full()"
)


@pytest.fixture
def api(tmp_path: Path, pg_url: str) -> Iterator[EmbeddedApi]:
    with embedded_api(tmp_path, database_url=pg_url) as embedded:
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[TestClient[Any]]:
    with TestClient(api.app) as test_client:
        yield test_client


class Disk:
    """The events table's inserts refused as disk_full while `full`."""

    def __init__(self, pg_url: str, api: EmbeddedApi) -> None:
        self._url = pg_url
        self._table: Identifier = api.runtime.app.recorder.events_table  # type: ignore[attr-defined]

    def fill(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(_FULL)
            conn.execute(SQL(_TRIGGER).format(table=self._table))

    def free(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(
                SQL("DROP TRIGGER crm_test_disk_full ON {table}").format(table=self._table)
            )
            conn.execute("DROP FUNCTION crm_test_disk_full()")

    def events(self) -> int:
        with psycopg.connect(self._url) as conn:
            row = conn.execute(SQL("SELECT count(*) FROM {table}").format(table=self._table))
            return int(row.fetchone()[0])  # type: ignore[index]


@pytest.fixture
def disk(pg_url: str, api: EmbeddedApi) -> Disk:
    return Disk(pg_url, api)


def assert_storage_full(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"].endswith("/storage-full"), answer.text
    assert int(answer.headers["retry-after"]) > 0


def test_a_full_disk_refusing_the_insert_is_storage_full_and_releases_the_key(
    api: EmbeddedApi, client: TestClient[Any], disk: Disk
) -> None:
    agent = api.token("sam", "sales", "agent")
    first = client.post("/v1/customers", json={"name": "Ann Lee"}, headers=agent)
    assert first.status_code == 201, first.text
    customer, head = first.json()["id"], first.json()["position"]
    stored = disk.events()
    disk.fill()

    keyed = agent | {"Idempotency-Key": "signup-1"}
    started = time.monotonic()
    assert_storage_full(client.post("/v1/customers", json={"name": "Zoe"}, headers=keyed))
    assert time.monotonic() - started < 1.5  # at once: not ten reconnects
    patch = {"company": "Acme"}
    assert_storage_full(client.patch(f"/v1/customers/{customer}", json=patch, headers=agent))
    assert_storage_full(client.post("/v1/customers", json={"name": "Zoe"}, headers=keyed))
    assert disk.events() == stored

    disk.free()
    retried = client.post("/v1/customers", json={"name": "Zoe"}, headers=keyed)
    assert retried.status_code == 201, retried.text  # not 409: the key was released
    assert retried.json()["position"] == head + 1  # the refused inserts used no position
    assert client.post("/v1/customers", json={"name": "Zoe"}, headers=keyed).json() == (
        retried.json()
    )
    assert disk.events() == stored + 1


def test_readiness_is_degraded_while_writes_are_refused_as_full(
    api: EmbeddedApi, client: TestClient[Any], disk: Disk
) -> None:
    agent = api.token("sam", "sales", "agent")
    assert client.get("/readyz").json()["checks"].get("writes", "ok") == "ok"
    disk.fill()
    refused = client.post("/v1/customers", json={"name": "Zoe"}, headers=agent)
    assert refused.status_code == 503, refused.text
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text  # degraded, not 503: reads still work
    assert ready.json()["status"] == "degraded", ready.text
    assert ready.json()["checks"]["event_store"] == "ok"  # it answers: it is full
    assert "storage full" in ready.json()["checks"].get("writes", "ok"), ready.text
    disk.free()
    assert client.post("/v1/customers", json={"name": "Zoe"}, headers=agent).status_code == 201
    assert client.get("/readyz").json()["checks"]["writes"] == "ok"  # a command committed
