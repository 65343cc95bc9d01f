"""A client that takes nothing (or a trickle) of its answer for `CRM_HTTP_SEND_SECONDS`
has its connection aborted; a client that keeps reading, slowly, gets the whole answer.

Red team: the answer to a GET is handed to the connection whole, and a client that asked
for a large one and never read kept it in the process for as long as it kept the
connection (150 of them grew `crm api` by 730 MB; 16 of 20 still held after 240 s). Real
`crm run` (asyncio's loop) and `crm api` (uvloop) processes.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import Processes, crm_processes, free_port, server_env

pytestmark = pytest.mark.integration

SEND_SECONDS = "2"
MESSAGES, MESSAGE_BYTES = 80, 50_000  # a conversation whose GET is ~4 MB
ABORTED = "connection aborted: its client took too little of its answer"


def admin_token(crm: Processes, process: subprocess.Popen[bytes]) -> dict[str, str]:
    """The bootstrap admin's token `crm run` shows, or a new admin's on PostgreSQL."""
    shown = re.search(r"token[^:]*: (\S+)", crm.output(process))
    if shown:
        return {"Authorization": f"Bearer {shown.group(1)}"}
    token = crm.run("principals", "add", "root", "--department", "it", "--role", "admin")
    return {"Authorization": f"Bearer {token.strip().splitlines()[-1]}"}


def large_conversation(http: httpx.Client) -> str:
    customer = {"name": "Ada", "owner_department": "support"}
    made = http.post("/v1/customers", json=customer)
    assert made.status_code == 201, made.text
    opened = {"customer_id": made.json()["id"], "channel": "email", "subject": "s",
              "department": "support"}  # fmt: skip
    conversation = http.post("/v1/conversations", json=opened)
    assert conversation.status_code == 201, conversation.text
    path = f"/v1/conversations/{conversation.json()['id']}"
    message = {"direction": "inbound", "author": "Ada", "content": "x" * MESSAGE_BYTES}
    for _ in range(MESSAGES):
        sent = http.post(f"{path}/messages", json=message)
        assert sent.status_code == 201, sent.text
    return path


def asked(port: int, path: str, token: dict[str, str]) -> socket.socket:
    """A connection that sent a GET of `path` and has read nothing (a small receive
    buffer, so the answer waits in the server rather than in this kernel)."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {token['Authorization']}\r\n\r\n"
    client.sendall(head.encode())
    return client


def read_all(client: socket.socket, *, pause: float = 0.0, slowly_for: float = 0.0) -> bytes:
    """What `client` receives until the server closes it (or resets it), taking 16 KiB
    each `pause` seconds for the first `slowly_for` seconds, then as fast as it comes."""
    client.settimeout(30)
    received, slow_until = bytearray(), time.monotonic() + slowly_for
    try:
        while chunk := client.recv(16_384 if time.monotonic() < slow_until else 1 << 20):
            received += chunk
            if time.monotonic() < slow_until:
                time.sleep(pause)
            elif answered_whole(bytes(received)):
                break
    except ConnectionResetError:
        pass
    return bytes(received)


def answered_whole(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: (\d+)", head)
    return length is not None and len(body) >= int(length.group(1))


@pytest.mark.parametrize("command", ["run", "api"])
def test_a_client_that_reads_nothing_is_cut_and_one_that_reads_is_served(
    command: str, pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = server_env(command, pg_url, tmp_path)
    with crm_processes(env | {"CRM_HTTP_SEND_SECONDS": SEND_SECONDS}, tmp_path) as crm:
        process = crm.serve(command, port)
        base = f"http://127.0.0.1:{port}"
        token = admin_token(crm, process)
        with httpx.Client(base_url=base, headers=token, timeout=60) as http:
            path = large_conversation(http)
            whole = http.get(path)
            assert whole.status_code == 200, whole.text[:300]
            assert len(whole.json()["messages"]) == MESSAGES
            slow_reader_served(port, path, token)
            assert ABORTED not in crm.output(process)
            aborted = partial(crm.output, process)
            client_cut(port, path, token, lambda: aborted().count(ABORTED) == 1)
            client_cut(port, path, token, lambda: aborted().count(ABORTED) == 2, trickle=True)
            assert http.get(path).status_code == 200  # the service goes on
        assert process.poll() is None


def slow_reader_served(port: int, path: str, token: dict[str, str]) -> None:
    """A client that keeps the server's writing paused for longer than the bound, but
    takes something all along, gets its answer whole."""
    slow = asked(port, path, token)
    try:
        answer = read_all(slow, pause=0.1, slowly_for=3 * float(SEND_SECONDS))
    finally:
        slow.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert answered_whole(answer), f"the slow reader got {len(answer)} bytes"


def client_cut(
    port: int, path: str, token: dict[str, str], aborted: Callable[[], bool], trickle: bool = False
) -> None:
    """A client that reads nothing, or 4 KiB every half second (well under
    `TAKEN_BYTES` a period), has its connection aborted (the server says so), and is
    never sent its answer whole."""
    client = asked(port, path, token)
    try:
        deadline = time.monotonic() + 60  # a bound on waiting, not on speed
        while not aborted():
            assert time.monotonic() < deadline, "the client's connection was not aborted"
            if trickle:
                client.recv(4096)
            time.sleep(0.5)
        cut = read_all(client)  # what its kernel held, then the reset or the end
    finally:
        client.close()
    assert not answered_whole(cut), "the client was sent its answer whole"
