"""What the HTTP server itself refuses before the app sees a request: a request head
(request line and headers) larger than `MAX_HEAD_BYTES` is a 431 and the connection
closes. httptools keeps a head in memory until it ends, however long: 400 MiB of one
header grew `crm run` from 86 MB to 654 MB, and the request was never answered."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.http_head_limit import MAX_HEAD_BYTES
from tests.e2e.processes import crm_processes, free_port, wait_for_http

pytestmark = pytest.mark.integration

CHUNK = b"a" * 65_536


def head_answer(port: int, head: bytes, filler_bytes: int) -> bytes:
    """Send `head`, then up to `filler_bytes` more of its last header's value, then
    the head's end; what the server answers first (b"" if it closed without a word)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        try:
            connection.sendall(head)
            for _ in range(filler_bytes // len(CHUNK)):
                connection.sendall(CHUNK)
            connection.sendall(b"\r\n\r\n")
        except OSError:  # the server closed it early: its answer is already there
            pass
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := connection.recv(65_536)):
            answer += chunk
        return answer


@pytest.mark.parametrize("command", ["api", "run"])
def test_a_huge_request_head_is_a_431(command: str, pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"CRM_DATABASE_URL": pg_url if command == "api" else "", "CRM_DATA_DIR": str(tmp_path)}
    with crm_processes(env, tmp_path) as crm:
        process = crm.start(command, "--host", "127.0.0.1", "--port", str(port))
        wait_for_http(f"http://127.0.0.1:{port}", process)
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        ordinary = head_answer(port, head + b"a" * (MAX_HEAD_BYTES // 2), 0)
        assert ordinary.startswith(b"HTTP/1.1 200 "), ordinary[:200]
        huge = head_answer(port, head, 32 * 2**20)
        assert huge.startswith(b"HTTP/1.1 431 "), huge[:200]
        many = b"".join(b"X-%d: a\r\n" % n for n in range(MAX_HEAD_BYTES // 8))
        lines = head_answer(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"X: ", 0)
        assert lines.startswith(b"HTTP/1.1 431 "), lines[:200]
        url = head_answer(port, b"GET /healthz?" + b"a" * (2 * MAX_HEAD_BYTES), 0)
        assert url.startswith(b"HTTP/1.1 431 "), url[:200]
        assert pipelined(port, 20) == 20
        assert process.poll() is None


def pipelined(port: int, count: int) -> int:
    """How many of `count` requests sent in one write, each with a head of 8 KiB and
    together past `MAX_HEAD_BYTES`, are answered 200 (the bound is per head)."""
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8192 + b"\r\n\r\n"
    assert len(one) * count > MAX_HEAD_BYTES
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(one * count)
        answers = b""
        while answers.count(b"HTTP/1.1 ") < count and (chunk := connection.recv(65_536)):
            answers += chunk
    return answers.count(b"HTTP/1.1 200 ")
