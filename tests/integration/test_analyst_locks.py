"""An analyst's open transaction delays a rebuild's switch but never the API's reads.

A login of `crm analysts grant` that left a transaction open after one `SELECT` held the
views' ACCESS SHARE locks; the switch's `DROP SCHEMA` waited for them with no timeout, and
every API read of the projection queued behind it until the analyst's session ended (red
team). The switch now waits under `lock_timeout` and tries again (`consumers.pg_lock_wait`);
the server's end of a forgotten transaction (`consumers.analysts`) is tested with the
analysts' logins (test_analysts.py).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg import sql

from bench.databases import fresh_database
from consumers.follower import rebuild_from_store
from consumers.readmodel_store import LocksHeld
from consumers.store_postgres import PostgresStore
from projections import PROJECTIONS
from services.cli import main
from tests.e2e.processes import eventually
from tests.integration.api_support import EmbeddedApi, embedded_api

BOUND_S = 60.0
"""A bound on waiting for what must happen, never a speed."""
SHARED = PROJECTIONS["shared"]


@pytest.fixture
def database(server_url: str) -> Iterator[str]:
    """A fresh database; its analysts' group role is dropped after it."""
    with fresh_database(server_url, prefix="crm_analyst_locks") as url:
        yield url
    group = f"{urlsplit(url).path.lstrip('/')}_analysts"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(group)))


@pytest.fixture
def grant(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[[str], str]]:
    """`grant(name)`: `crm analysts grant name`, its password; every one revoked after."""
    granted: list[str] = []

    def granting(name: str) -> str:
        monkeypatch.setenv("CRM_DATABASE_URL", database)
        assert main(["analysts", "grant", name]) == 0
        granted.append(name)
        return capsys.readouterr().out.split("password ", 1)[1].split()[0]

    yield granting
    monkeypatch.setenv("CRM_DATABASE_URL", database)
    for name in granted:
        main(["analysts", "revoke", name])


def _as(url: str, name: str, password: str) -> psycopg.Connection[Any]:
    """An analyst's session as a BI tool opens one: not in autocommit."""
    parts = urlsplit(url)
    netloc = f"{quote(name)}:{quote(password)}@{parts.hostname}:{parts.port}"
    return psycopg.connect(urlunsplit(parts._replace(netloc=netloc)))


def _lock_waits(url: str) -> list[str]:
    """The queries of this database's sessions waiting for a lock now."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:  # asserted by the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _department_read(api: EmbeddedApi, client: TestClient[Any]) -> list[Any]:
    """`GET /v1/departments/sales/customers` answered within `BOUND_S`: its items."""
    admin = api.token(f"root_{uuid.uuid4().hex[:6]}", "sales", "admin")
    thread, outcome = _in_thread(
        lambda: client.get("/v1/departments/sales/customers", headers=admin)
    )
    thread.join(BOUND_S)
    assert not thread.is_alive(), "the department's read queued behind the waiting switch"
    assert outcome["result"].status_code == 200, outcome["result"].text
    items: list[Any] = outcome["result"].json()["items"]
    return items


def _three_customers(api: EmbeddedApi, client: TestClient[Any]) -> None:
    admin = api.token("root", "sales", "admin")
    for n in range(3):
        body = {"name": f"Customer {n}", "owner_department": "sales"}
        assert client.post("/v1/customers", json=body, headers=admin).status_code == 201
    api.catch_up()


def _holding(analyst: psycopg.Connection[Any]) -> None:
    """Read a view and leave the transaction open, as a tool would; whatever the login's
    idle timeout (the session may change it), the switch must not rely on it."""
    analyst.execute("SET idle_in_transaction_session_timeout = 0")
    analyst.commit()
    assert analyst.execute("SELECT count(*) FROM shared.customers").fetchone() == (3,)


def test_an_analysts_open_transaction_delays_the_switch_and_never_the_apis_reads(
    database: str, tmp_path: Path, grant: Callable[[str], str]
) -> None:
    name = f"ann_{uuid.uuid4().hex[:8]}"
    with embedded_api(tmp_path, database_url=database) as api, TestClient(api.app) as client:
        _three_customers(api, client)
        live = api.store.live_generation("shared")
        analyst = _as(database, name, grant(name))
        _holding(analyst)
        rebuilding, outcome = _in_thread(
            lambda: rebuild_from_store(api.runtime.app, api.store, SHARED)
        )
        try:
            eventually(
                lambda: any(q.startswith("DROP SCHEMA") for q in _lock_waits(database)),
                within=BOUND_S, what="the switch asking for the views' locks",
            )  # fmt: skip
            assert len(_department_read(api, client)) == 3
            eventually(lambda: not _lock_waits(database), within=BOUND_S,
                       what="no session waiting for a lock as the analyst holds one")  # fmt: skip
            assert rebuilding.is_alive(), outcome  # delayed, neither done nor failed...
            assert api.store.live_generation("shared") == live  # ...and nothing half done
        finally:
            analyst.close()  # the analyst lets go
        rebuilding.join(BOUND_S)
        assert not rebuilding.is_alive(), "the switch did not go on once the analyst let go"
        assert outcome.get("result") == api.store.live_generation("shared") != live, outcome
        assert len(_department_read(api, client)) == 3


def test_a_switch_that_waits_too_long_gives_up_whole_and_names_who_holds_on(
    database: str, tmp_path: Path, grant: Callable[[str], str]
) -> None:
    name = f"ann_{uuid.uuid4().hex[:8]}"
    with embedded_api(tmp_path, database_url=database) as api, TestClient(api.app) as client:
        _three_customers(api, client)
        live = api.store.live_generation("shared")
        analyst = _as(database, name, grant(name))
        try:
            _holding(analyst)
            assert isinstance(api.store, PostgresStore)
            api.store.lock_patience = 3.0
            rebuilding, outcome = _in_thread(
                lambda: rebuild_from_store(api.runtime.app, api.store, SHARED)
            )
            rebuilding.join(BOUND_S)
            waiting = rebuilding.is_alive()
        finally:
            analyst.close()
        assert not waiting, "the switch waited for the analyst with no end"
        refused = outcome.get("error")
        assert isinstance(refused, LocksHeld), outcome
        assert name in str(refused)
        assert "shared.customers" in str(refused)
        assert api.store.live_generation("shared") == live
        with psycopg.connect(database) as conn:  # the rebuilt generation was dropped
            schemas = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'shared\\_v%'"
            ).fetchall()
        assert schemas == [(f"shared_v{live}",)]
        assert len(_department_read(api, client)) == 3
