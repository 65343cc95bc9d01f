"""uvicorn's httptools protocol with bounds on receiving a request: its head at most
`MAX_HEAD_BYTES` (else a 431), and the whole request, head and body, within
`receive_seconds` (else a 408; a connection that sent nothing is closed without a word).
Either way the connection closes.

httptools (llhttp) sets no limit of its own, and uvicorn none for it (h11 has one):
a head is kept in memory until its blank line comes, however long. One connection
sending 400 MiB of a single header grew `crm run` from 86 MB to 654 MB and was never
answered; a few at once would take the process down. h11's default bound is 16 KiB,
nginx's 32 KiB; a bearer token and the usual headers need well under 4 KiB.

Bytes are counted as they arrive while a head is being read (from the start of the
connection or the end of the previous request), so the bound holds however the head
is split: a long URL, one long header, or many short ones.

uvicorn times out only a connection idle between two requests (its keep-alive, 5 s,
which any byte cancels): a connection that never sends its first request, or sends a
head or body a byte at a time, was kept forever, with its file descriptor. 200 of
those left a `crm api` limited to 256 descriptors answering nobody. The deadline
counts from the connection, or from the previous answer, to the request's last byte,
and no byte extends it: a slow sender gets as long as a silent one, then the door.
While a request received whole waits for its answer (a command, an event stream)
nothing is counted.

Sending is bounded too: a client that takes (next to) nothing of what it is sent for
`send_seconds` (`CRM_HTTP_SEND_SECONDS`) has its connection aborted, and the bytes of
its answer still waiting to go out with it. An answer is handed to the transport whole
(uvicorn writes a body as the app gives it), and a client that asked for a large one and
never read kept it in the process for as long as it kept the connection: 150 such
connections to a 5 MB conversation grew `crm api` by 730 MB, and 16 of 20 were still
held after 240 s (red team). Neither uvicorn's keep-alive nor the receive deadline
helped: `close` waits for the buffer to drain, which it never does. The clock runs only
while the transport is paused for writing (more than its high-water mark waits to go
out), and it starts again whenever the client took `TAKEN_BYTES` in the meantime: a
slow client that keeps reading is not cut, however long its answer takes. Less does not
count: a client's kernel takes a few kB on its own (a zero-window probe), and one that
reads a few bytes now and then would otherwise hold its answer for good. What is taken
is what the client's kernel acknowledges, and a receiving kernel reopens a full window
only once 1/16 of its buffer is free (at least one segment): a slow reader with a large
receive buffer (autotuned up to `tcp_rmem`'s maximum, 32 MB here: 2 MB a step) can take
nothing for a whole period though it reads, and is cut (review: 25 KB/s with a 4 MB
buffer, `send_seconds` 3). Telling it from a silent client needs a longer look than one
period; not done. It covers event
streams as well (their own `SEND_SECONDS` per message ends a stream under granian too,
`services.api.events_stream.bounded_sends`): the stream sees its client gone, and its
slot and page go.
I/O: the connection's transport (the 431 or 408, the close, the abort).
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from contextlib import suppress
from socket import SO_LINGER, SOL_SOCKET
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.api.problem_table import PROBLEM_BASE

MAX_HEAD_BYTES = 65_536
TAKEN_BYTES = 65_536
"""The least a client must take of what it is sent each `send_seconds` while writing is
paused (the transport's own high-water mark): 2 KiB/s at the default 30 s, as its kernel
acknowledges it (see above: a reader with a large receive buffer acknowledges in steps)."""
log = structlog.get_logger("crm.http")


def _refusal(status: int, reason: str, kind: str, detail: str) -> bytes:
    """A whole HTTP answer: a problem document, and the connection closes."""
    body = b'{"type":"%s%s","title":"%s","status":%d,"detail":"%s"}' % (
        PROBLEM_BASE.encode(),
        kind.encode(),
        reason.encode(),
        status,
        detail.encode(),
    )
    return (
        b"HTTP/1.1 %d %s\r\n"
        b"content-type: application/problem+json\r\n"
        b"cache-control: no-store\r\n"
        b"content-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body)
    )


_TOO_LARGE = _refusal(
    431,
    "Request Header Fields Too Large",
    "request-header-fields-too-large",
    f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` refusing a request head longer than `MAX_HEAD_BYTES` and a
    request not received whole within `receive_seconds` (`CRM_HTTP_RECEIVE_SECONDS`),
    and aborting a connection whose client takes nothing it is sent for `send_seconds`
    (`CRM_HTTP_SEND_SECONDS`)."""

    _reading_head = True  # False from a head's end until its request is answered
    _head_bytes = 0  # received while reading the current head
    _tail = b""  # the last bytes received, for a head's end split across reads

    def __init__(
        self, *args: Any, receive_seconds: float, send_seconds: float = 30.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.receive_seconds, self.send_seconds = receive_seconds, send_seconds
        self._too_slow = _refusal(
            408,
            "Request Timeout",
            "request-timeout",
            f"the request was not received whole within {receive_seconds:g} s",
        )
        self._deadline: asyncio.TimerHandle | None = None
        self._stalled: asyncio.TimerHandle | None = None  # armed while writing is paused
        self._unsent = 0  # bytes not taken by the client when the clock last (re)started

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        self._stop_send_clock()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._start_send_clock()

    def resume_writing(self) -> None:
        self._stop_send_clock()
        super().resume_writing()

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            # A head over the bound that ends in this same read is refused before it is
            # parsed: counted only after, it was whole by then and was served (ci-fresh:
            # 80 kB of short header lines and the head's end arrived in one read).
            ends = (self._tail + data).find(b"\r\n\r\n")
            head = len(data) if ends < 0 else max(ends + 4 - len(self._tail), 0)
            if self._head_bytes + head > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.logger.warning("Request head over %d bytes refused (431).", MAX_HEAD_BYTES)
                self._refuse(_TOO_LARGE)
                return
            self._head_bytes += len(data)
        self._tail = data[-3:]  # a head's end may straddle two reads
        super().data_received(data)
        over = self._reading_head and self._head_bytes > MAX_HEAD_BYTES
        if over and not self.transport.is_closing():  # (closing: uvicorn answered a 400)
            self.logger.warning("Request head over %d bytes refused (431).", MAX_HEAD_BYTES)
            self._refuse(_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self._stop_deadline()  # received whole: its answer is the app's to give
        super().on_message_complete()
        self._reading_head, self._head_bytes = True, 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle  # the latest request: this one, or one pipelined after it
        whole_unanswered = not (cycle.more_body or cycle.response_complete)
        if not self.transport.is_closing() and not whole_unanswered:
            self._start_deadline()

    def _start_deadline(self) -> None:
        self._stop_deadline()
        self._deadline = self.loop.call_later(self.receive_seconds, self._receive_expired)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _receive_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._reading_head and not self._head_bytes:
            self.transport.close()  # nothing of a request came: no one to answer
            return
        self.logger.warning("Request not received within %g s (408).", self.receive_seconds)
        if self._reading_head or not self.cycle.response_started:
            self._refuse(self._too_slow)
        else:
            self.transport.close()

    def _start_send_clock(self) -> None:
        self._unsent = self._untaken()
        self._stalled = self.loop.call_later(self.send_seconds, self._send_expired)

    def _stop_send_clock(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _send_expired(self) -> None:
        """Still paused `send_seconds` on: abort, unless the client took its share."""
        self._stalled = None
        untaken = self._untaken()
        if self._unsent - untaken >= TAKEN_BYTES:  # slow, but reading: a new period
            self._start_send_clock()
            return
        log.warning(
            "connection aborted: its client took too little of its answer in send_seconds",
            seconds=self.send_seconds,
            taken_bytes=self._unsent - untaken,
            unsent_bytes=untaken,
        )
        connection = self.transport.get_extra_info("socket")
        with suppress(OSError, AttributeError):  # a reset: the kernel's queue goes too
            connection.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()  # `close` would wait for the buffer to drain: never

    def _untaken(self) -> int:
        """Bytes sent that the client has not taken: in the transport's buffer, and in
        the kernel's send queue, unacknowledged (Linux's SIOCOUTQ; elsewhere only the
        former). The transport alone misses a client that reads: it moves nothing into
        a full kernel queue until half of that queue is acknowledged, megabytes apart."""
        untaken = self.transport.get_write_buffer_size()
        connection = self.transport.get_extra_info("socket")
        with suppress(OSError, AttributeError):
            queued = fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, bytes(4))
            untaken += int(struct.unpack("i", queued)[0])
        return untaken

    def _refuse(self, answer: bytes) -> None:
        """Answer `answer` in the app's stead and close; the app, if it runs, sees the
        client gone (as `connection_lost` would tell it)."""
        self._reading_head = False
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(answer)
        self.transport.close()
