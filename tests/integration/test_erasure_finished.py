"""An erasure whose key store was locked is finished, on SQLite and PostgreSQL.

Red team: `CustomerErased` was stored, destroying the customer's data key then failed
(another connection held `keys.db` locked past its 5 s wait), the API answered a 500,
and every retry a 409 `customer-erased`: the key lived on for good, and the history
still showed the e-mail. Now a locked key store is a 503 `storage-busy` with
Retry-After, a retry destroys the key and answers as the erasure did (nothing stored
twice), and an erasure nobody retries is finished when the API starts.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from httpx import Response
from litestar.testing import TestClient

from consumers.key_stores import PostgresKeyStore, SqliteKeyStore
from consumers.keyring import KeyStore, new_data_key
from services.bootstrap import connect_pool
from services.erasure_sweep import finish_owed_erasures
from tests.e2e.processes import eventually
from tests.integration.api_support import Client, EmbeddedApi, embedded_api

HELD_PAST_THE_WAIT = 8.0
"""Seconds another connection holds the key store locked: past its wait (5 s). A lock
on PostgreSQL is let go then whatever happens, so code that waits for it ends too."""


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another connection holds the SQLite file's lock (a backup, another process)."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


@contextmanager
def key_locked_at_destruction(
    api: EmbeddedApi, tmp_path: Path, database_url: str | None, customer: uuid.UUID
) -> Iterator[None]:
    """The customer's key held locked by another connection when the erasure comes to
    destroy it, after its event is stored: on SQLite the file (locked as `destroy`
    starts, on its own connection), on PostgreSQL the key's row."""
    if database_url is None:
        with pytest.MonkeyPatch.context() as patch:
            store = api.runtime.keyring.store
            destroy = store.destroy

            def destroy_while_locked(subject: uuid.UUID) -> None:
                with sqlite_locked(tmp_path / "keys.db"):
                    destroy(subject)

            patch.setattr(store, "destroy", destroy_while_locked)
            yield
        return
    with psycopg.connect(database_url) as blocker:
        blocker.execute(
            "SELECT FROM crm_subject_keys WHERE subject = %s FOR UPDATE", (customer,)
        ).fetchall()
        letting_go = threading.Timer(HELD_PAST_THE_WAIT, blocker.rollback)
        letting_go.start()
        try:
            yield
        finally:
            letting_go.cancel()
            blocker.rollback()


@pytest.fixture
def key_store(tmp_path: Path, database_url: str | None) -> Iterator[KeyStore]:
    if database_url is None:
        yield SqliteKeyStore(tmp_path / "keys.db")
        return
    pool = connect_pool(database_url)
    try:
        yield PostgresKeyStore(pool)
    finally:
        pool.close()


def test_a_key_store_owes_an_erasure_until_it_destroys_the_key(key_store: KeyStore) -> None:
    kept, erased, never = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key_store.create(kept, new_data_key())
    key_store.create(erased, new_data_key())
    for subject in (kept, erased, never, erased):
        key_store.owe_erasure(subject)
    assert sorted(key_store.owed_erasures()) == sorted([kept, erased, never])
    key_store.destroy(erased)
    key_store.owe_erasure(erased)  # destroyed: nothing more is owed
    assert sorted(key_store.owed_erasures()) == sorted([kept, never])
    key_store.drop_owed_erasure(kept, 3600)  # owed just now: kept
    assert sorted(key_store.owed_erasures()) == sorted([kept, never])
    key_store.drop_owed_erasure(kept, -60)  # as if owed more than a minute ago
    assert key_store.owed_erasures() == [never]
    assert key_store.load(kept) is not None


def register(client: Client, headers: dict[str, str]) -> uuid.UUID:
    body = {"name": "Grace Hopper", "email": "grace@example.com"}
    made = client.post("/v1/customers", json=body, headers=headers)
    assert made.status_code == 201, made.text
    return uuid.UUID(made.json()["id"])


def history_types(client: Client, customer: uuid.UUID, headers: dict[str, str]) -> list[str]:
    history = client.get(f"/v1/customers/{customer}/history", headers=headers).json()
    return [event["type"] for event in history]


def erased_while_key_locked(
    api: EmbeddedApi,
    client: Client,
    tmp_path: Path,
    database_url: str | None,
    admin: dict[str, str],
    *,
    idempotency_key: str | None = None,
) -> tuple[uuid.UUID, str, Response]:
    """A customer registered, then erased (with `idempotency_key`, if any) while another
    connection holds their key locked (`key_locked_at_destruction`): the customer, the
    erasure's path and its first answer."""
    customer = register(client, admin)
    path = f"/v1/customers/{customer}/erasure"
    keyed = admin | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
    with key_locked_at_destruction(api, tmp_path, database_url, customer):
        first = client.post(path, json={"reason": "asked"}, headers=keyed)
    return customer, path, first


def keyed_erasure_left_busy(
    api: EmbeddedApi, client: Client, tmp_path: Path, database_url: str | None
) -> tuple[dict[str, str], dict[str, str], uuid.UUID, str]:
    """An admin's erasure under Idempotency-Key `e-1` answered 503 `storage-busy`, its
    key locked at destruction: the admin's headers, with the key, the customer, the path."""
    admin = api.token("root", "sales", "admin")
    customer, path, first = erased_while_key_locked(
        api, client, tmp_path, database_url, admin, idempotency_key="e-1"
    )
    assert_busy(first)
    return admin, admin | {"Idempotency-Key": "e-1"}, customer, path


def assert_busy(answer: Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"].endswith("/storage-busy"), answer.text
    assert int(answer.headers["Retry-After"]) > 0


def test_a_retry_finishes_an_erasure_whose_key_outlived_its_event(
    tmp_path: Path, database_url: str | None
) -> None:
    with (
        embedded_api(tmp_path, database_url=database_url) as api,
        TestClient(api.app) as client,
    ):
        admin, keyed, customer, path = keyed_erasure_left_busy(api, client, tmp_path, database_url)
        assert history_types(client, customer, admin)[-1] == "CustomerErased"
        keys = api.runtime.keyring.store
        assert not keys.destroyed(customer)
        assert keys.owed_erasures() == [customer]

        retry = client.post(path, json={"reason": "asked"}, headers=keyed)
        assert retry.status_code == 200, retry.text
        erased_at = api.runtime.app.head_position()  # nothing stored since the erasure
        assert retry.json() == {"id": str(customer), "version": 2, "position": erased_at}
        assert retry.headers["ETag"] == '"2"'
        assert keys.destroyed(customer)
        assert keys.owed_erasures() == []
        shown = client.get(f"/v1/customers/{customer}/history", headers=admin)
        assert "grace@example.com" not in shown.text
        assert history_types(client, customer, admin) == ["CustomerRegistered", "CustomerErased"]

        again = client.post(path, json={"reason": "asked"}, headers=admin)  # key gone: as before
        assert again.status_code == 409, again.text
        assert again.json()["type"].endswith("/customer-erased")


def test_a_keyed_retry_after_the_sweep_answers_as_the_erasure_did(
    tmp_path: Path, database_url: str | None
) -> None:
    """The sweep (at start-up, then every 30 s, in every API process) destroyed the key
    between the 503 and the client's retry with the same Idempotency-Key: the request
    that erased the customer was answered 409 `customer-erased`, where a retry that came
    first got 200. Now 200 either way; unkeyed, erasing again is the 409, as before."""
    with (
        embedded_api(tmp_path, database_url=database_url) as api,
        TestClient(api.app) as client,
    ):
        admin, keyed, customer, path = keyed_erasure_left_busy(api, client, tmp_path, database_url)
        assert finish_owed_erasures(api.runtime.app, api.runtime.keyring) == {customer}

        retry = client.post(path, json={"reason": "asked"}, headers=keyed)
        assert retry.status_code == 200, retry.text
        erased_at = api.runtime.app.head_position()  # nothing stored since the erasure
        assert retry.json() == {"id": str(customer), "version": 2, "position": erased_at}
        assert history_types(client, customer, admin) == ["CustomerRegistered", "CustomerErased"]
        again = client.post(path, json={"reason": "asked"}, headers=admin)
        assert again.status_code == 409, again.text
        other_key = admin | {"Idempotency-Key": "e-2"}
        assert client.post(path, json={"reason": "asked"}, headers=other_key).status_code == 409


def test_a_key_store_locked_through_the_erasure_stores_nothing_and_a_retry_erases(
    tmp_path: Path,
) -> None:
    """The red team's case on the SQLite default: `keys.db` locked for the whole first
    attempt. Its erasure is owed before its event is stored, so it fails there."""
    with embedded_api(tmp_path) as api, TestClient(api.app) as client:
        admin = api.token("root", "sales", "admin")
        customer = register(client, admin)
        path, keyed = f"/v1/customers/{customer}/erasure", admin | {"Idempotency-Key": "e-1"}
        with sqlite_locked(tmp_path / "keys.db"):
            first = client.post(path, json={"reason": "asked"}, headers=keyed)
        assert_busy(first)
        assert history_types(client, customer, admin) == ["CustomerRegistered"]

        retry = client.post(path, json={"reason": "asked"}, headers=keyed)
        assert retry.status_code == 200, retry.text
        assert api.runtime.keyring.store.destroyed(customer)
        shown = client.get(f"/v1/customers/{customer}/history", headers=admin)
        assert "grace@example.com" not in shown.text


def test_an_erasure_nobody_retries_is_finished_when_the_api_starts(
    tmp_path: Path, database_url: str | None
) -> None:
    with (
        embedded_api(tmp_path, database_url=database_url) as api,
        TestClient(api.app) as client,
    ):
        admin = api.token("root", "sales", "admin")
        customer, _, first = erased_while_key_locked(api, client, tmp_path, database_url, admin)
        assert first.status_code >= 500
        assert not api.runtime.keyring.store.destroyed(customer)

    with (
        embedded_api(tmp_path, database_url=database_url) as restarted,
        TestClient(restarted.app) as client,
    ):
        keys = restarted.runtime.keyring.store
        eventually(lambda: keys.destroyed(customer), within=10, what="the key destroyed")
        assert keys.owed_erasures() == []
        auditor = restarted.token("audrey", "sales", "auditor")
        shown = client.get(f"/v1/customers/{customer}/history", headers=auditor)
        assert shown.status_code == 200, shown.text
        assert "grace@example.com" not in shown.text
        assert history_types(client, customer, auditor) == [
            "CustomerRegistered",
            "CustomerErased",
        ]
