"""A PostgreSQL server gone silent (a fail-over that moved its address, a partition: no
reset ever comes) is found dead by every connection, and `/readyz` says so in time.

What the kernel does with the libpq settings (`services.settings.DEAD_PEER_DEFAULTS`)
needs a network that drops packets, which a proxy cannot fake: its own kernel answers
the keepalive probes. So these tests check that the settings reach the socket of each
kind of connection the product opens, and, through a proxy that holds every byte, that
the readiness probe answers on its own deadline. The drop itself is
`test_dead_peers_netns` (a network namespace, where one can be made).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from litestar.testing import TestClient

from consumers.relay_wakeup import ListenWakeup
from consumers.store_factory import open_store
from consumers.store_postgres import PostgresStore
from services.api.loop_reads import current_state_of
from services.bootstrap import Runtime, bootstrap
from services.pg_batch_recorder import connect_kwargs
from services.settings import load_settings
from tests.integration.api_support import (
    LIVENESS_S,
    answered_within_liveness,
    embedded_api,
    eventually_ready,
)
from tests.integration.pg_commit_cut import CommitCut

pytestmark = pytest.mark.integration

EXPECTED = {
    "SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 3,
    "TCP_USER_TIMEOUT": 10_000,
}  # fmt: skip
"""What the kernel holds for a connection given the defaults."""


def socket_options(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> dict[str, int]:
    """The dead-peer options the kernel holds for `conn`'s socket."""
    with closing(socket.socket(fileno=os.dup(conn.fileno()))) as sock:
        keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        tcp = {
            name: sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
            for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")
        }
    return {"SO_KEEPALIVE": int(keepalive != 0), **tcp}


@pytest.fixture
def runtime(tmp_path: Path, pg_url: str) -> Iterator[Runtime]:
    if urlsplit(pg_url).hostname in (None, ""):
        pytest.skip("PostgreSQL over a Unix socket: no TCP options")
    env = {"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)}
    runtime = bootstrap(load_settings(env))
    try:
        yield runtime
    finally:
        runtime.close()


def test_every_kind_of_connection_finds_a_silent_server_dead(runtime: Runtime) -> None:
    """The shared pool (principals, idempotency, access log...), the event store's own
    pool, the batch writer's connection, the loop's reads, the read-model store and the
    relay's LISTEN: all built from the one setting."""
    url = runtime.settings.database_url
    assert url is not None
    assert runtime.pool is not None
    found = {}
    with runtime.pool.connection() as conn:
        found["shared pool"] = socket_options(conn)
    with runtime.app.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
        found["event store"] = socket_options(conn)
    with psycopg.connect(**connect_kwargs(runtime.app.recorder)) as conn:  # type: ignore[arg-type]
        found["batch writer"] = socket_options(conn)
    found["loop reads"] = asyncio.run(_loop_reads_options(runtime))
    store = open_store(url, runtime.settings.data_dir)
    assert isinstance(store, PostgresStore)
    with closing(store), store.pool.connection() as conn:
        found["read models"] = socket_options(conn)
    wakeup = ListenWakeup(url, "crm_dead_peer_test")
    with closing(wakeup):
        assert wakeup._conn is not None
        found["relay wakeup"] = socket_options(wakeup._conn)
    assert found == dict.fromkeys(found, EXPECTED)


async def _loop_reads_options(runtime: Runtime) -> dict[str, int]:
    _, reads = current_state_of(runtime)
    assert reads is not None
    connection = await reads._connections._connect()
    try:
        return socket_options(connection.conn)
    finally:
        await connection.conn.close()


def test_the_operators_own_settings_reach_the_socket(tmp_path: Path, pg_url: str) -> None:
    url = f"{pg_url}{'&' if '?' in pg_url else '?'}keepalives_idle=30&tcp_user_timeout=0"
    settings = load_settings({"CRM_DATABASE_URL": url, "CRM_DATA_DIR": str(tmp_path)})
    with psycopg.connect(settings.database_url or "") as conn:
        options = socket_options(conn)
    assert (options["TCP_KEEPIDLE"], options["TCP_USER_TIMEOUT"]) == (30, 0)
    assert (options["SO_KEEPALIVE"], options["TCP_KEEPINTVL"]) == (1, 2)


def test_readyz_answers_while_the_server_is_silent(tmp_path: Path, pg_url: str) -> None:
    """Every byte held, open links and new: `/readyz` answers 503 within its deadline,
    again and again, and is ready again once the bytes flow."""
    parts = urlsplit(pg_url)
    proxy = CommitCut((parts.hostname or "127.0.0.1", parts.port or 5432), seconds=0)
    through = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    plain = "sslmode=disable&gssencmode=disable"  # the proxy forwards start-up unread
    url = urlunsplit(parts._replace(netloc=through, query=plain))
    with (
        closing(proxy),
        embedded_api(tmp_path, database_url=url) as api,
        TestClient(app=api.app) as client,
    ):
        assert client.get("/readyz").json()["checks"]["event_store"] == "ok"
        proxy.hold()
        try:
            time.sleep(1.1)  # past the cached answer
            answers = [answered_within_liveness(client, "/readyz") for _ in range(3)]
        finally:
            proxy.release()
        back = eventually_ready(client)
    for answer, took in answers:
        body = answer.json()
        assert (answer.status_code, body["status"]) == (503, "degraded")
        assert body["checks"]["event_store"].startswith("event store unavailable: no answer")
        assert took < LIVENESS_S
    assert back
