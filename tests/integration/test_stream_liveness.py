"""An event stream's client must keep taking what it is sent, or give its slot back.

Red team: a quiet stream wrote nothing, so a client gone without a word (a NAT's
timeout, a laptop changing networks) was never found out, and one that kept the
connection but stopped reading waited for good; each kept its slot until the process
stopped (eight: the principal's 429 for good; `CRM_STREAMS_MAX`: everyone's 503), and a
stalled one collected, whenever it read again, the plaintext of a customer erased and of
a token revoked meanwhile. A quiet stream now writes `: keep-alive`, and a client that
takes no message for `SEND_SECONDS` has its stream ended. Embedded, a real uvicorn.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from services.api import events_stream
from services.api.deps import Services
from tests.e2e.processes import eventually
from tests.integration.api_support import EmbeddedApi, embedded_api, served

URL = "/v1/events/stream"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[EmbeddedApi]:
    with embedded_api(tmp_path) as running:
        yield running


def services(api: EmbeddedApi) -> Services:
    held: Services = api.app.state.services
    return held


def test_a_quiet_stream_writes_a_keep_alive_comment(
    api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_stream, "KEEP_ALIVE_SECONDS", 0.3)
    sam = api.token("sam", "sales", "agent")
    with (
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=10) as http,
        http.stream("GET", URL, headers=sam) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(line for line in lines if line) == ": keep-alive"
        assert next(line for line in lines if line) == ": keep-alive"  # and again


def stalled_client(base: str, token: dict[str, str]) -> socket.socket:
    """A stream's client that reads its answer's head, then nothing more (a small
    receive buffer, so the server's writes back up soon)."""
    address = urlsplit(base)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((address.hostname or "", address.port or 80))
    head = f"GET {URL} HTTP/1.1\r\nHost: x\r\nAuthorization: {token['Authorization']}\r\n\r\n"
    client.sendall(head.encode())
    assert client.recv(12) == b"HTTP/1.1 200"
    return client


def test_a_client_that_stops_reading_has_its_stream_ended_and_its_slot_back(
    api: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_stream, "SEND_SECONDS", 1.0)
    sam = api.token("sam", "sales", "agent")
    with served(api.app) as base, httpx.Client(base_url=base, timeout=30) as http:
        client = stalled_client(base, sam)
        try:
            eventually(lambda: services(api).streams.held("sam") == 1 or None, within=10,
                       what="the stalled client's stream open")  # fmt: skip
            made = http.post("/v1/customers", json={"name": "Ada"}, headers=sam)
            talk = {"customer_id": made.json()["id"], "channel": "chat", "subject": "s"}
            conversation = http.post("/v1/conversations", json=talk, headers=sam).json()["id"]
            message = {"direction": "inbound", "author": "Ada", "content": "x" * 50_000}
            for _ in range(60):  # ~3 MB of events for a client that takes none of them
                sent = http.post(
                    f"/v1/conversations/{conversation}/messages", json=message, headers=sam
                )
                assert sent.status_code == 201, sent.text
            eventually(lambda: services(api).streams.held("sam") == 0 or None, within=30,
                       what="the stalled stream's slot given back")  # fmt: skip
        finally:
            client.close()
        with http.stream("GET", URL, headers=sam) as again:  # the service goes on
            assert again.status_code == 200
