"""The stand-in `crm api` answers with while it waits for PostgreSQL at start: it holds a
thread a connection, so it answers at most `CONNECTIONS` at once and closes the others."""

from __future__ import annotations

import socket
from contextlib import ExitStack

from services.api_waiting import CONNECTIONS, WaitingAnswers


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthz(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return connection.recv(65_536)


def test_connections_past_the_bound_are_closed_not_given_a_thread() -> None:
    port = _port()
    with WaitingAnswers("127.0.0.1", port, receive_seconds=60) as waiting, ExitStack() as held:
        waiting.down(frozenset({"postgres"}))
        assert _healthz(port).startswith(b"HTTP/1.0 200 ")
        silent = [
            held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            for _ in range(CONNECTIONS)
        ]
        for _ in range(3):  # each silent one holds its thread for up to 60 s
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                assert extra.recv(1) == b""  # closed at once (else: a timeout after 10 s)
        silent.pop().close()  # its thread ends, and the next connection is answered
        answer = b""
        for _ in range(50):
            if (answer := _healthz(port)).startswith(b"HTTP/1.0 200 "):
                break
        assert answer.startswith(b"HTTP/1.0 200 "), answer
