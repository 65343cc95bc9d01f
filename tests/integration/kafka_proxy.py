"""A TCP proxy in front of the private broker's proxied listener, which can cut a Kafka
client off from its group coordinator while its data path keeps working.

kafka-python talks to the group coordinator on a connection of its own (JoinGroup,
SyncGroup, Heartbeat, LeaveGroup, OffsetFetch/Commit). After `cut()`, every such
connection, open or opened later, becomes a black hole once it carries coordinator
traffic: the proxy keeps both sockets open but forwards nothing more either way, as a
half-open connection behind a dead route would. After `restore()`, connections opened
from then on are forwarded normally again (the silent ones stay silent). The proxy
reads only each request's 4-byte size and 2-byte API key (the Kafka frame header).

I/O: sockets on 127.0.0.1, threads of the test process.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

COORDINATOR_APIS = {8, 9, 11, 12, 13, 14}
"""OffsetCommit, OffsetFetch, JoinGroup, Heartbeat, LeaveGroup, SyncGroup."""


@dataclass
class _Link:
    client: socket.socket
    broker: socket.socket
    coordinator: bool = False
    silent: threading.Event = field(default_factory=threading.Event)


class KafkaProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`; `close()` ends everything."""

    def __init__(self, port: int, upstream: int) -> None:
        self.upstream = upstream
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._cutting = threading.Event()
        self._server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        threading.Thread(target=self._accept, name="kafka-proxy", daemon=True).start()

    def cut(self) -> None:
        """Black-hole every coordinator connection, open now or later."""
        self._cutting.set()
        with self._lock:
            links = [link for link in self._links if link.coordinator]
        for link in links:
            link.silent.set()

    def restore(self) -> None:
        """Forward connections opened from now on (the silenced stay silent)."""
        self._cutting.clear()
        with self._lock:
            self._links = [link for link in self._links if not link.coordinator]

    def close(self) -> None:
        self._server.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            for end in (link.client, link.broker):
                end.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                broker = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            broker.settimeout(None)
            link = _Link(client, broker)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._requests, args=(link,), daemon=True).start()
            threading.Thread(target=self._responses, args=(link,), daemon=True).start()

    def _requests(self, link: _Link) -> None:
        """Client to broker, frame by frame, noting coordinator traffic."""
        try:
            while frame := _read_frame(link.client):
                if struct.unpack(">h", frame[4:6])[0] in COORDINATOR_APIS:
                    link.coordinator = True
                    if self._cutting.is_set():
                        link.silent.set()
                if not link.silent.is_set():
                    link.broker.sendall(frame)
        except OSError:
            pass

    def _responses(self, link: _Link) -> None:
        """Broker to client, as bytes come (dropped once the link is silent)."""
        try:
            while data := link.broker.recv(65536):
                if not link.silent.is_set():
                    link.client.sendall(data)
        except OSError:
            pass


def _read_frame(sock: socket.socket) -> bytes:
    """One size-prefixed request, with its size; empty at the end of the stream."""
    header = _read_exactly(sock, 4)
    if not header:
        return b""
    return header + _read_exactly(sock, struct.unpack(">i", header)[0])


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    chunks, remaining = [], count
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return b""
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
