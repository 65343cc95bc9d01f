"""A TCP proxy in front of PostgreSQL that loses the answer of a committed batch.

Everything is forwarded until `arm()`. Then the next execution of the event store's
locked insert (`<events>_insert_locked`, `services.pg_batch_recorder`) of at least
`least` aggregates reaches the server and runs there: the proxy reads its whole answer, up
to ReadyForQuery (autocommit: the batch is committed by then), drops it, resets the
connection, and refuses new connections for `seconds` (PostgreSQL restarting, a
fail-over). Connections opened before keep working. The proxy reads only message types,
lengths, and the insert's first parameter (the events' aggregate ids, `cut_ids`).
Start-up is forwarded unread: connect with `sslmode=disable&gssencmode=disable`.

`hold()` stops forwarding on every link, open or new, keeping the sockets open: a
partition, as the clients see it but for their keepalive probes, which the kernel of
this host still answers. `release()` forwards what was held, and everything after.

I/O: sockets on 127.0.0.1, threads of the test process.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from uuid import UUID

INSERT_MARK = b"_insert_locked"


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    writer: bool = False  # the connection prepared the locked insert
    bound: frozenset[UUID] = frozenset()  # the aggregates of its last insert bound
    cutting: bool = False  # the insert being executed is the one to cut


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One message after start-up: its type byte, and its length and body as sent."""
    kind = _exactly(sock, 1)
    head = _exactly(sock, 4)
    (size,) = struct.unpack("!I", head)
    return kind, head + _exactly(sock, size - 4)


def _end(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected any more
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def bound_ids(bind: bytes) -> frozenset[UUID]:
    """The uuid[] first parameter of a Bind message (length and body), sent binary; none
    when it is not one."""
    try:
        return _first_uuids(bind)
    except (ValueError, IndexError, struct.error):
        return frozenset()


def _first_uuids(bind: bytes) -> frozenset[UUID]:
    at = bind.index(b"\0", 4) + 1  # after the portal's name
    at = bind.index(b"\0", at) + 1  # after the statement's name
    (formats,) = struct.unpack_from("!h", bind, at)
    at += 2 + 2 * formats + 2  # the format codes, then the parameter count
    (size,) = struct.unpack_from("!i", bind, at)
    array = bind[at + 4 : at + 4 + size]
    dimensions, _, _ = struct.unpack_from("!iiI", array)
    at = 12 + 8 * dimensions
    ids = set()
    while at < len(array):
        (length,) = struct.unpack_from("!i", array, at)
        ids.add(UUID(bytes=array[at + 4 : at + 4 + length]))
        at += 4 + length
    return frozenset(ids)


class CommitCut:
    """Forwards 127.0.0.1:`port` to `upstream` (host, port); `close()` ends everything."""

    def __init__(self, upstream: tuple[str, int], seconds: float) -> None:
        self.upstream = upstream
        self.seconds = seconds
        self.cut_ids: frozenset[UUID] = frozenset()  # the aggregates of the batch cut
        self.cut = threading.Event()
        self._least: int | None = None  # armed: the aggregates a batch to cut holds at least
        self._refusing_until = 0.0
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="pg-cut-accept", daemon=True).start()

    def arm(self, least: int = 1) -> None:
        with self._lock:
            self._least = least

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def _forward(self, to: socket.socket, data: bytes) -> None:
        self._flowing.wait()
        to.sendall(data)

    def refusing(self) -> bool:
        return time.monotonic() < self._refusing_until

    def close(self) -> None:
        self.release()  # the held pumps end on the closed sockets
        _end(self._listener)
        with self._lock:
            for sock in self._sockets:
                _end(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self.refusing():
                _end(client)
                continue
            link = _Link(client, socket.create_connection(self.upstream))
            for sock in (link.client, link.server):  # a message a write: no Nagle delays
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [link.client, link.server]
            for pump in (self._to_server, self._to_client):
                threading.Thread(target=pump, args=(link,), daemon=True).start()

    def _to_server(self, link: _Link) -> None:
        try:
            head = _exactly(link.client, 4)  # the start-up message: no type byte
            (size,) = struct.unpack("!I", head)
            self._forward(link.server, head + _exactly(link.client, size - 4))
            while True:
                kind, body = _message(link.client)
                link.writer = link.writer or (kind == b"P" and INSERT_MARK in body)
                if kind == b"B" and link.writer:
                    link.bound = bound_ids(body)
                if kind == b"E" and link.writer:
                    link.cutting = self._take(link.bound)
                self._forward(link.server, kind + body)
        except (EOFError, OSError):
            _end(link.server)

    def _take(self, bound: frozenset[UUID]) -> bool:
        """Whether the insert of `bound` is the one to cut (then disarmed)."""
        with self._lock:
            if self._least is None or len(bound) < self._least:
                return False
            self._least = None
            self.cut_ids = bound
            return True

    def _to_client(self, link: _Link) -> None:
        try:
            while True:
                kind, body = _message(link.server)
                if not link.cutting:
                    self._forward(link.client, kind + body)
                elif kind == b"Z":  # it ran and committed: lose the answer, and the server
                    self._refusing_until = time.monotonic() + self.seconds
                    link.client.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )  # a reset, as a server gone away
                    _end(link.client)
                    _end(link.server)
                    self.cut.set()
                    return
        except (EOFError, OSError):
            _end(link.client)
