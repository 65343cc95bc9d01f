"""What the HTTP server itself refuses before the app sees a request: a request head
(request line and headers) larger than `MAX_HEAD_BYTES` is a 431 and the connection
closes. httptools keeps a head in memory until it ends, however long: 400 MiB of one
header grew `crm run` from 86 MB to 654 MB, and the request was never answered. A
request not received whole within `CRM_HTTP_RECEIVE_SECONDS` is a 408, and a
connection that sends nothing is closed: uvicorn kept both forever."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

import httpx
import pytest

from services.http_request_bounds import MAX_HEAD_BYTES
from tests.e2e.processes import crm_processes, eventually, free_port, server_env
from tests.integration.stream_support import Stream, about

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
    env = server_env(command, pg_url, tmp_path)
    with crm_processes(env, tmp_path) as crm:
        process = crm.serve(command, port)
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        ordinary = head_answer(port, head + b"a" * (MAX_HEAD_BYTES // 2), 0)
        assert ordinary.startswith(b"HTTP/1.1 200 "), ordinary[:200]
        huge = head_answer(port, head, 32 * 2**20)
        assert huge.startswith(b"HTTP/1.1 431 "), huge[:200]
        many = b"".join(b"X-%d: a\r\n" % n for n in range(MAX_HEAD_BYTES // 8))
        lines = head_answer(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"X: ", 0)
        assert lines.startswith(b"HTTP/1.1 431 "), lines[:200]
        # The same head sent whole in one write: the read crossing the bound holds its end
        # too, and it was served (ci-fresh).
        whole = head_answer(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many, 0)
        assert whole.startswith(b"HTTP/1.1 431 "), whole[:200]
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


SLOW_CLIENTS = {"CRM_HTTP_RECEIVE_SECONDS": "1"}
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


def slow_body(token: str) -> bytes:
    """A command's head, authenticated (a request without a valid token is a 401 before
    its body is read), and the start of a body it promised 900 bytes of."""
    return (
        f"POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Length: 900\r\n\r\n{"
    ).encode()


def trickled(connection: socket.socket, start: bytes) -> bytes:
    """Send `start`, then one byte every 0.2 s until the server answers or closes (a
    guard of 100 bytes); the head of its answer (b"" if it closed without a word)."""
    connection.settimeout(0.2)
    connection.sendall(start)
    for _ in range(100):
        try:
            answer = connection.recv(65_536)
        except TimeoutError:
            connection.sendall(b"a")
            continue
        while answer and b"\r\n\r\n" not in answer and (more := connection.recv(65_536)):
            answer += more
        return answer
    return b"(still open)"


@pytest.mark.parametrize("command", ["api", "run"])
def test_a_request_not_received_in_time_is_a_408_and_a_silent_connection_is_closed(
    command: str, pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = server_env(command, pg_url, tmp_path)
    with crm_processes(env | SLOW_CLIENTS, tmp_path) as crm:
        process = crm.serve(command, port)
        token = crm.run("principals", "add", "eve", "--department", "sales", "--role", "admin")
        token = token.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        stream = Stream(f"http://127.0.0.1:{port}", "/v1/events/stream", headers)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as silent:
            assert silent.recv(1) == b""  # closed, nothing said
        for start in (SLOW_HEAD, slow_body(token)):
            with socket.create_connection(("127.0.0.1", port)) as connection:
                answer = trickled(connection, start)
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        with socket.create_connection(("127.0.0.1", port), timeout=20) as kept_alive:
            kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b"}"):  # its head and body: the answer whole
                first += kept_alive.recv(65_536)
            assert first.startswith(b"HTTP/1.1 200 "), first
            answer = trickled(kept_alive, SLOW_HEAD)  # the next request on it: timed again
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert pipelined(port, 20) == 20
        body = {"name": "Ada", "company": "Acme", "owner_department": "sales"}
        created = httpx.post(f"http://127.0.0.1:{port}/v1/customers", json=body, headers=headers)
        try:  # a request received whole is not timed while it is answered: a stream goes on
            stream.until(about(created.json()["id"]), "the stream to deliver after the deadline")
        finally:
            stream.close()
        assert process.poll() is None


def test_slow_clients_cannot_keep_every_file_descriptor(pg_url: str, tmp_path: Path) -> None:
    """`crm api` allowed 256 descriptors, 300 clients that connect and send a head a
    byte at a time: the server drops them in time, and a plain request is answered."""
    port = free_port()
    with crm_processes({"CRM_DATABASE_URL": pg_url} | SLOW_CLIENTS, tmp_path) as crm:
        process = crm.serve("api", port)
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (256, 256))
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        try:
            for connection in slow:
                connection.sendall(SLOW_HEAD)

            def answered() -> bool | None:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success
                except httpx.TransportError:  # not accepted, or accepted and dropped
                    return None

            assert eventually(answered, within=60, what="a plain request to be answered")
        finally:
            for connection in slow:
                connection.close()
        assert process.poll() is None


@pytest.mark.parametrize("command", ["api", "run"])
def test_granian_answers_while_more_connections_than_its_backlog_are_open(
    command: str, pg_url: str, tmp_path: Path
) -> None:
    """granian's default bound on connections was its listen backlog (128): 200 open
    connections that send nothing left it answering nobody. Its head deadline is
    `CRM_HTTP_RECEIVE_SECONDS`, as uvicorn's."""
    port = free_port()
    env = server_env(command, pg_url, tmp_path)
    env |= SLOW_CLIENTS | {"CRM_HTTP_SERVER": "granian"}
    with crm_processes(env, tmp_path) as crm:
        process = crm.serve(command, port)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        try:
            answered = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
            assert answered.status_code == 200
            with socket.create_connection(("127.0.0.1", port)) as connection:
                assert trickled(connection, SLOW_HEAD) == b""  # granian closes it silently
        finally:
            for connection in idle:
                connection.close()
        assert process.poll() is None
