"""An event stream waits out a store another process holds locked, as it waits out
PostgreSQL being unreachable, and goes on on the same connection.

Red team: with the embedded principals.db locked past its busy wait (a backup, `sqlite3`
in a shell), the stream's re-check of its token raised "database is locked" after its
answer had started: the connection was cut mid-body, and the roles whose stream starts
at the head lost what was stored before they reconnected. Embedded, a real uvicorn.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import principals
from services.api.deps import Services
from tests.integration.api_support import EmbeddedApi, embedded_api, served

pytestmark = pytest.mark.integration

URL = "/v1/events/stream"
HELD_SECONDS = 7.0  # past the principal store's busy wait (sqlite3's 5 s)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[EmbeddedApi]:
    with embedded_api(tmp_path) as running:
        services: Services = running.app.state.services
        services.stream_poll_seconds = 0.05
        yield running


def created(http: httpx.Client, token: dict[str, str], name: str) -> str:
    made = http.post("/v1/customers", json={"name": name}, headers=token)
    assert made.status_code == 201, made.text
    customer: str = made.json()["id"]
    return customer


def until(lines: Iterator[str], customer: str) -> None:
    """Read the stream until an event of `customer` comes."""
    next(line for line in lines if line.startswith("data:") and customer in line)


def test_a_stream_rides_out_a_locked_principal_store(
    api: EmbeddedApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(principals, "CACHE_SECONDS", 0.2)  # each page asks the store
    sam = api.token("sam", "sales", "agent")
    timeout = httpx.Timeout(10, read=60)
    with (
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=timeout) as http,
        http.stream("GET", URL, headers=sam) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        until(lines, created(http, sam, "Ada"))
        holder = sqlite3.connect(tmp_path / "principals.db", isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # readers wait too (IMMEDIATE lets them in)
            time.sleep(HELD_SECONDS)
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        until(lines, created(http, sam, "Grace"))  # the same stream, after the lock
