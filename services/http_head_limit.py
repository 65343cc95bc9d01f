"""uvicorn's httptools protocol with a bound on the request head: past `MAX_HEAD_BYTES`
of request line and headers the answer is a 431 and the connection closes.

httptools (llhttp) sets no limit of its own, and uvicorn none for it (h11 has one):
a head is kept in memory until its blank line comes, however long. One connection
sending 400 MiB of a single header grew `crm run` from 86 MB to 654 MB and was never
answered; a few at once would take the process down. h11's default bound is 16 KiB,
nginx's 32 KiB; a bearer token and the usual headers need well under 4 KiB.

Bytes are counted as they arrive while a head is being read (from the start of the
connection or the end of the previous request), so the bound holds however the head
is split: a long URL, one long header, or many short ones.
I/O: the connection's transport (the 431, the close).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.api.errors import PROBLEM_BASE

MAX_HEAD_BYTES = 65_536

_BODY = (
    b'{"type":"%srequest-header-fields-too-large",'
    b'"title":"Request Header Fields Too Large","status":431,'
    b'"detail":"the request line and headers exceed %d bytes"}'
    % (PROBLEM_BASE.encode(), MAX_HEAD_BYTES)
)
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"cache-control: no-store\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` refusing a request head longer than `MAX_HEAD_BYTES`."""

    _reading_head = True  # False from a head's end until its request is answered
    _head_bytes = 0  # received while reading the current head

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        over = self._reading_head and self._head_bytes > MAX_HEAD_BYTES
        if over and not self.transport.is_closing():  # (closing: uvicorn answered a 400)
            self._refuse()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head, self._head_bytes = True, 0

    def _refuse(self) -> None:
        self.logger.warning("Request head over %d bytes refused (431).", MAX_HEAD_BYTES)
        self._reading_head = False
        self.transport.write(_REFUSAL)
        self.transport.close()
