"""What `crm api` answers while it waits, as it starts, for a PostgreSQL that is away.

It used to listen on no port until the database answered: an operator's probes found
nothing to ask why, and clients a refused connection where a running API in the same
outage answers 503 `event-store-unavailable` with `Retry-After`. From the first failed
attempt (`wait_for_database` reports it to `WaitingAnswers.down`) until the API is built
and about to serve, `WaitingAnswers` listens on the API's address instead: `/healthz`
answers 200 (the process is alive and doing what it should: a restart fixes no
database), naming what it waits for; `/readyz` 503, its `event_store` check saying why,
as a running API's does in an outage; anything else the 503 problem a running API
answers then. An API whose database answers at once never starts it.

Standard library HTTP, a thread a connection (at most `CONNECTIONS` at once: more are
closed unanswered), each closed after one answer or after `CRM_HTTP_RECEIVE_SECONDS`
without one; a body is read (at most 1 MiB) and dropped. Should
the address be taken, the API waits without it, and its server reports the address later.
I/O: one listening socket, while waiting.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import structlog

from services.api.problem_table import MEDIA_TYPE, PROBLEM_BASE
from services.api.response_headers import API_HEADERS
from services.api.store_troubles import UNAVAILABLE, UNAVAILABLE_RETRY_AFTER_S

log = structlog.get_logger("crm.api")

WAITING_FOR = "postgres"
BODY_BYTES = 2**20  # what is read of a request's body, to answer before closing
WHY = "PostgreSQL cannot be reached: the API waits for it to start"
READYZ = {"status": "degraded", "checks": {"event_store": WHY}}
CONNECTIONS = 64
"""Connections answered at once: each holds a thread for up to `CRM_HTTP_RECEIVE_SECONDS`,
so without a bound a client opening thousands would have the process start thousands."""


class _Server(ThreadingHTTPServer):
    """`ThreadingHTTPServer` with at most `CONNECTIONS` threads: past them, a connection
    is closed at once (a probe retries; nothing is lost while nothing can be served)."""

    daemon_threads = True
    request_queue_size = CONNECTIONS  # the listen backlog (socketserver's is 5)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Answers(BaseHTTPRequestHandler):
    timeout = 30.0  # set per server: CRM_HTTP_RECEIVE_SECONDS
    server_version, sys_version = "crm", ""

    def do_GET(self) -> None:
        self._answer()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # noqa: N815

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request http.server cannot read (a bad request line, too long a header): a
        problem document too, of no type more precise than its status (RFC 9457)."""
        title = HTTPStatus(code).phrase
        self.close_connection = True
        self._send(code, {"type": "about:blank", "title": title, "status": code}, MEDIA_TYPE)

    def _answer(self) -> None:
        length = self.headers.get("Content-Length", "0")
        sent = int(length) if length.isdigit() and len(length) < 10 else 0
        self.rfile.read(min(sent, BODY_BYTES))
        path = self.path.partition("?")[0]
        if path == "/healthz":
            self._send(200, {"status": "waiting", "waiting_for": WAITING_FOR})
        elif path == "/readyz":
            self._send(503, READYZ)
        else:
            status, slug, title = UNAVAILABLE
            problem = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
            problem |= {"detail": WHY, "instance": path}
            self._send(status, problem, MEDIA_TYPE, {"Retry-After": UNAVAILABLE_RETRY_AFTER_S})

    def _send(
        self,
        status: int,
        body: object,
        media_type: str = "application/json",
        headers: dict[str, object] | None = None,
    ) -> None:
        encoded = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (API_HEADERS | {"Content-Type": media_type} | (headers or {})).items():
            self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(encoded)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the waiting is logged once, by `consumers.outage`."""


class WaitingAnswers:
    """Answers on `host:port` from the first `down` until closed (see the module)."""

    def __init__(self, host: str, port: int, receive_seconds: float) -> None:
        self._address, self._receive_seconds = (host, port), receive_seconds
        self._server: _Server | None = None

    def down(self, dependencies: frozenset[str]) -> None:
        """`Dependencies.on_change`: start answering when the first is found down."""
        if not dependencies or self._server is not None:
            return
        handler = type("Answers", (_Answers,), {"timeout": self._receive_seconds})
        try:
            self._server = _Server(self._address, handler)
        except OSError as error:
            log.warning("not answering while waiting", address=self._address, error=str(error))
            return
        threading.Thread(target=self._server.serve_forever, name="crm-waiting", daemon=True).start()

    def __enter__(self) -> WaitingAnswers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop answering: the API's own server binds the address next."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
