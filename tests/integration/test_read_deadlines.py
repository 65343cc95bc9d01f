"""A read-model query has a deadline, lists leave point reads their connections, and one
principal's lists leave other principals theirs.

A filter matching nothing scans a whole department (seconds at a million customers):
such a query is cancelled past `CRM_READ_QUERY_SECONDS` and answered 503
`query-timeout` with `Retry-After` (the deadline's ceiling), on PostgreSQL
(`statement_timeout`) and SQLite (an interrupt); on PostgreSQL, read-model queries hold
at most `LIST_SHARE` of the API's read connections, so `GET /v1/customers/{id}` is
answered while they are all stuck, and one principal's at most `LIST_SHARE_EACH`, so
another principal's list is answered while the first's are stuck; on SQLite, a slow
query leaves the event loop to the other requests, and waits behind at most one of each
other principal's.

The slowness is made on purpose, whatever the read model's indexes: on PostgreSQL a
lock the test holds on the read model's table (a query waits for it, as it would
scan), on SQLite a view whose rows take seconds to count.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from services.api.direct_reads import DirectReadModels
from services.api.http_errors import TooManyQueries
from services.api.read_models import ReadModels
from services.pg_read_connections import LIST_SHARE, LIST_SHARE_EACH, POOL_SIZE
from services.read_deadline import QueryTimeoutError
from tests.e2e.processes import eventually
from tests.integration.api_support import Client, EmbeddedApi, embedded_api, served

pytestmark = pytest.mark.integration

PAGE = "/v1/departments/sales/customers?limit=5"
TASKS = "/v1/departments/sales/tasks?limit=5"  # another read model: no lock holds it up
TIMEOUT = "https://crm-collab.example/problems/query-timeout"


def _registered(api: EmbeddedApi, client: httpx.Client | Client) -> tuple[dict[str, str], str]:
    """A sales agent's headers and a customer of theirs, applied to the read models."""
    auth = api.token("ann", "sales", "agent")
    created = client.post("/v1/customers", json={"name": "Ada"}, headers=auth)
    assert created.status_code == 201, created.text
    api.catch_up()
    return auth, created.json()["id"]


@contextmanager
def _customers_locked(pg_url: str, api: EmbeddedApi) -> Iterator[threading.Event]:
    """The shared read model's customers table locked by another connection until the
    event is set (or, on code without a deadline, 20 s passed: the test fails then)."""
    generation = api.store.live_generation("shared")
    release, locked = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(pg_url) as conn, conn.transaction():
            conn.execute(f"LOCK TABLE shared_v{generation}.customers IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(20)

    holder = threading.Thread(target=hold, name="lock-holder")
    holder.start()
    try:
        assert locked.wait(10)
        yield release
    finally:
        release.set()
        holder.join()


def _waiting_on_locks(pg_url: str) -> int:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_list_query_past_its_deadline_answers_query_timeout_on_postgres(
    pg_url: str, tmp_path: Path
) -> None:
    settings = {"CRM_READ_QUERY_SECONDS": "1.5"}
    with (
        embedded_api(tmp_path, database_url=pg_url, settings=settings) as api,
        TestClient(api.app) as client,
    ):
        auth, customer = _registered(api, client)
        with _customers_locked(pg_url, api) as release:
            answer = client.get(PAGE, headers=auth)
            release.set()
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"] == TIMEOUT
        assert answer.headers["Retry-After"] == "2"  # the deadline's ceiling
        assert client.get(PAGE, headers=auth).status_code == 200  # the connection is fine
        assert client.get(f"/v1/customers/{customer}", headers=auth).status_code == 200


def test_a_point_read_is_answered_while_list_queries_hold_their_share(
    pg_url: str, tmp_path: Path
) -> None:
    """Twice as many stuck department pages as the API has read connections, of as many
    principals as fill the share with their parts: they hold `LIST_SHARE` of them, and a
    customer's GET (nothing kept in memory: it reads the event store) finds one of the
    others."""
    settings = {"CRM_READ_QUERY_SECONDS": "60", "CRM_CACHE_MB": "0"}
    with (
        embedded_api(tmp_path, database_url=pg_url, settings=settings) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        auth, customer = _registered(api, http)
        agents = [auth] + [api.token(f"agent{n}", "sales", "agent") for n in range(1, LIST_SHARE)]
        with _customers_locked(pg_url, api) as release, ThreadPoolExecutor(2 * POOL_SIZE) as pool:

            def page(n: int) -> int:
                with httpx.Client(base_url=base, timeout=30) as own:
                    return own.get(PAGE, headers=agents[n % len(agents)]).status_code

            pages = [pool.submit(page, n) for n in range(2 * POOL_SIZE)]
            eventually(lambda: _waiting_on_locks(pg_url) >= LIST_SHARE, within=20, what="lists")
            point = http.get(f"/v1/customers/{customer}", headers=auth, timeout=10)
            stuck = _waiting_on_locks(pg_url)
            release.set()
            statuses = [p.result() for p in pages]
        assert point.status_code == 200, point.text
        assert stuck == LIST_SHARE
        assert statuses == [200] * len(pages)  # served in turn once the lock went


def test_another_principal_s_list_is_answered_while_one_principal_s_lists_are_stuck(
    pg_url: str, tmp_path: Path
) -> None:
    """One agent's eight stuck department pages hold `LIST_SHARE_EACH` connections (the
    rest of them wait for its own turns), and another agent's list is answered while
    they still do. Before, they held the whole share, and the other agent's list waited
    until the lock went."""
    settings = {"CRM_READ_QUERY_SECONDS": "60"}
    with (
        embedded_api(tmp_path, database_url=pg_url, settings=settings) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        auth, _ = _registered(api, http)
        other = api.token("bob", "sales", "agent")
        with _customers_locked(pg_url, api) as release, ThreadPoolExecutor(POOL_SIZE) as pool:

            def page() -> int:
                with httpx.Client(base_url=base, timeout=30) as own:
                    return own.get(PAGE, headers=auth).status_code

            pages = [pool.submit(page) for _ in range(POOL_SIZE)]
            eventually(
                lambda: _waiting_on_locks(pg_url) >= LIST_SHARE_EACH, within=20, what="lists"
            )
            tasks = http.get(TASKS, headers=other)
            stuck = _waiting_on_locks(pg_url)  # ann's, still: bob's list came first
            release.set()
            statuses = [p.result() for p in pages]
        assert tasks.status_code == 200, tasks.text
        assert stuck == LIST_SHARE_EACH
        assert statuses == [200] * len(pages)  # ann's served in turn once the lock went


@pytest.fixture
def slow_sqlite_api(
    tmp_path: Path,
) -> Iterator[tuple[EmbeddedApi, Client, dict[str, str]]]:
    """The embedded API whose department membership view takes seconds to read (a
    count to 20 million in it; ~4 s here), with a read-model deadline of 0.3 s."""
    with (
        embedded_api(tmp_path, settings={"CRM_READ_QUERY_SECONDS": "0.3"}) as api,
        TestClient(api.app) as client,
    ):
        auth, _ = _registered(api, client)
        db = sqlite3.connect(tmp_path / "readmodels.db", isolation_level=None)
        db.execute("DROP VIEW shared__customer_departments")
        db.execute(
            "CREATE VIEW shared__customer_departments AS SELECT * FROM"
            " shared_v1__customer_departments WHERE (WITH RECURSIVE r(n) AS"
            " (VALUES (1) UNION ALL SELECT n + 1 FROM r WHERE n < 20000000)"
            " SELECT count(*) FROM r) > 0"
        )
        db.close()
        yield api, client, auth


def test_a_list_query_past_its_deadline_answers_query_timeout_on_sqlite(
    slow_sqlite_api: tuple[EmbeddedApi, Client, dict[str, str]],
) -> None:
    _, client, auth = slow_sqlite_api
    answer = client.get(PAGE, headers=auth)
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"] == TIMEOUT
    assert answer.headers["Retry-After"] == "1"  # 0.3 s, rounded up
    assert client.get("/v1/ping", headers=auth).status_code == 200


def test_a_slow_sqlite_query_leaves_the_event_loop_to_others(
    slow_sqlite_api: tuple[EmbeddedApi, Client, dict[str, str]],
) -> None:
    """While the slow page's query runs, other tasks on the loop run too (on the loop,
    it held every other request until it ended); it ends past its deadline."""
    api = slow_sqlite_api[0]
    models = api.app.state.services.queries_on_loop
    assert isinstance(models, DirectReadModels)
    ticks: list[int] = []

    async def scenario() -> BaseException | None:
        querying = True

        async def other_request() -> None:
            while querying:
                ticks.append(1)
                await asyncio.sleep(0.01)

        other = asyncio.create_task(other_request())
        await asyncio.sleep(0)  # it has started
        ticks.clear()
        try:
            await models.run(lambda m: m.customers("sales", tag=None, cursor=None, limit=5), "ann")
        except QueryTimeoutError as error:
            return error
        finally:
            querying = False
            await other
        return None

    error = asyncio.run(scenario())
    assert ticks, "the loop ran nothing else while the query ran"
    assert isinstance(error, QueryTimeoutError)
    assert isinstance(error.__cause__, sqlite3.OperationalError)
    assert error.__cause__.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT


def test_a_slow_sqlite_query_waits_behind_at_most_one_of_another_principal_s(
    slow_sqlite_api: tuple[EmbeddedApi, Client, dict[str, str]],
) -> None:
    """Three slow pages of ann's, then one of bob's: bob's runs after ann's first (or,
    the worker thread not free within the deadline, gives up: a 503 too), and ann's
    others wait behind hers (or, their turn not come within the deadline, are refused).
    Before, bob's ran after all three of ann's."""
    models = slow_sqlite_api[0].app.state.services.queries_on_loop
    assert isinstance(models, DirectReadModels)
    ended: list[tuple[str, type[BaseException]]] = []

    def page(m: ReadModels) -> object:
        return m.customers("sales", tag=None, cursor=None, limit=5)

    async def query(principal: str) -> None:
        try:
            await models.run(page, principal)
        except QueryTimeoutError:  # a 503 `query-timeout`, having run or waited for others
            ended.append((principal, QueryTimeoutError))
        except TooManyQueries:
            ended.append((principal, TooManyQueries))

    async def scenario() -> None:
        await asyncio.gather(*(query(p) for p in ["ann", "ann", "ann", "bob"]))

    asyncio.run(scenario())
    before_bob = ended[: ended.index(("bob", QueryTimeoutError))]
    assert before_bob.count(("ann", QueryTimeoutError)) <= 1, ended
    assert ("ann", TooManyQueries) in ended, ended
