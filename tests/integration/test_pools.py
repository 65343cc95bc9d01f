"""The project's PostgreSQL pools: the API's loop reads take turns in order, and after a
long outage pools connect as soon as a caller asks, not when their own backoff next
allows (`consumers.pg_pool.RECONNECT_TIMEOUT_S`).

psycopg_pool retries a lost connection in the background at 1, 3, 7, 15, 31, 63... s
(each ±10 %). The private server here stays down until 35 s after the pools first
failed, past the retry at 31 s (at most 34.1 s). `open_pool`'s pool left to that
default would try next at 56.7 s at the earliest, and the caller after the outage
fails (checked). The event store's pool may also recover through idle connections it
finds dead only after the outage (each starts a fresh attempt at once); an API busy
through the outage has found them all dead before, and then depends on the setting too.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg_pool import ConnectionPool

from consumers.pg_pool import DATABASE_UNAVAILABLE, GETCONN_TIMEOUT_S, open_pool
from services.event_store import CrmApplication, open_event_store
from services.pg_read_connections import POOL_SIZE
from services.pg_reads import PostgresReads
from tests.integration.api_support import embedded_api
from tests.integration.private_services import PrivateServices

pytestmark = pytest.mark.integration

BACK_AFTER_S = 35.0


def _pool_answers(pool: ConnectionPool) -> bool:
    """A connection within the wait `open_pool` gives every caller."""
    try:
        with pool.connection(timeout=GETCONN_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
            return True
    except DATABASE_UNAVAILABLE:
        return False


def _store_answers(app: CrmApplication) -> bool:
    """A query within the event store's own retries (what a command gets)."""
    try:
        app.head_position()
        return True
    except DATABASE_UNAVAILABLE:
        return False


def test_pools_connect_at_once_when_postgres_is_back_after_a_long_outage(
    private_services: PrivateServices,
) -> None:
    with private_services.database() as url:
        app, pool = open_event_store(url, None), open_pool(url, max_size=2)
        try:
            assert (_pool_answers(pool), _store_answers(app)) == (True, True)
            private_services.stop_postgres()
            try:
                began = time.monotonic()
                assert (_pool_answers(pool), _store_answers(app)) == (False, False)
                time.sleep(max(0.0, BACK_AFTER_S - (time.monotonic() - began)))
            finally:
                private_services.start_postgres()
            assert (_pool_answers(pool), _store_answers(app)) == (True, True)
        finally:
            pool.close()
            app.close()


def test_loop_reads_hand_a_released_connection_to_the_oldest_waiter(pg_url: str) -> None:
    """A read that finds every connection taken waits its turn; a connection released
    goes to it, not to a read that asks just after the release (with a queue of idle
    connections, that one took it, and the waiter queued again at the back: under
    saturation, a p99 several times the p50)."""
    order: list[str] = []

    async def scenario() -> None:
        reads = PostgresReads(pg_url, "public", "stored_events", "stored_snapshots")
        held = [reads._connections.connection() for _ in range(POOL_SIZE)]
        for connection in held:
            await connection.__aenter__()

        async def read(name: str) -> None:
            async with reads._connections.connection():
                order.append(name)

        waiting = asyncio.create_task(read("waiting"))
        await asyncio.sleep(0.1)  # it found every connection taken
        await held.pop().__aexit__(None, None, None)
        await read("arrived after the release")  # before `waiting` ran again
        await waiting
        for connection in held:
            await connection.__aexit__(None, None, None)
        await reads.aclose()

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert order == ["waiting", "arrived after the release"]


def test_every_connection_carries_the_database_urls_parameters(pg_url: str, tmp_path: Path) -> None:
    """A parameter of CRM_DATABASE_URL (here `application_name`; in production `sslmode`,
    `sslrootcert`, a socket directory in `?host=`) holds for every connection the API
    makes: the event store's pool and batch writer took only eventsourcing's five."""
    named = f"{pg_url}?application_name=crm-url-parameters"
    with embedded_api(tmp_path, database_url=named) as api, TestClient(api.app) as client:
        auth = api.token("ann", "sales", "agent")
        created = client.post("/v1/customers", json={"name": "Ada"}, headers=auth)
        assert created.status_code == 201, created.text
        assert client.get(f"/v1/customers/{created.json()['id']}", headers=auth).is_success
        api.catch_up()
        with psycopg.connect(pg_url, application_name="the-check") as check:
            names: dict[str, int] = dict(
                check.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " GROUP BY 1"
                ).fetchall()
            )
    assert names.keys() == {"crm-url-parameters"}, names
    assert names["crm-url-parameters"] >= 3
