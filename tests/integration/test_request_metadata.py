"""What events keep of a request's headers: never what the client wrote.

X-Request-Id and Idempotency-Key reached every event's metadata as sent: the
hash-chained log and Kafka for good (no erasure reaches metadata), `/history` and the
event stream, an analyst's too. A client that names a request after its person
(`Idempotency-Key: signup-grace.hopper@example.com`) stored the e-mail there; C1 control
characters got through a real uvicorn into the log. Now an X-Request-Id is the request's
id only when it is an opaque id (else the API makes one, and the answer names the one
used (red team)."""

from __future__ import annotations

import http.client
import json
import logging
import re
import uuid
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import structlog
from litestar.testing import TestClient
from structlog.testing import capture_logs

from services.api import observability
from tests.integration.api_support import embedded_api, served

EMAIL = "grace.hopper@example.com"
OURS = re.compile(r"[0-9a-f]{32}")
OPAQUE = "0B7C3B9E-0D6F-4F7E-9A53-2F0C6D7E8A91"


class Answer(NamedTuple):
    status: int
    request_id: str | None
    body: bytes


def send(base: str, method: str, url: str, headers: Sequence[tuple[str, str | bytes]],
         body: bytes = b"") -> Answer:  # fmt: skip
    """One request whose header values go out byte for byte (UTF-8 bytes as given)."""
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    try:
        connection.putrequest(method, url)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        return Answer(answer.status, answer.getheader("x-request-id"), answer.read())
    finally:
        connection.close()


HOSTILE: list[str | bytes] = [
    EMAIL,
    "\x9b2J\x9b31mforged\x85line",  # C1: CSI, NEL (uvicorn lets them through)
    "a\tb" + "0" * 16,
    "\u202e0123456789abcdef".encode(),  # a right-to-left override, in UTF-8
    "caf\u00e9-0123456789abcdef".encode(),
    "0123456789abcdef" * 640,  # 10 kB
    "",
]


def test_a_request_id_not_opaque_is_replaced_and_the_answer_names_the_one_used(
    tmp_path: Path,
) -> None:
    with embedded_api(tmp_path) as api, served(api.app) as base:
        root = api.token("root", "sales", "admin")["Authorization"]
        auth = [("Authorization", root), ("Content-Type", "application/json")]
        made = send(base, "POST", "/v1/customers", auth, b'{"name": "Grace Hopper"}')
        assert made.status == 201, made.body
        customer = json.loads(made.body)["id"]
        answered = [made.request_id]
        for n, sent in enumerate([*HOSTILE, OPAQUE]):
            body = b'{"company": "C%d"}' % n
            changed = send(base, "PATCH", f"/v1/customers/{customer}",
                           [*auth, ("X-Request-Id", sent)], body)  # fmt: skip
            assert changed.status == 200, (sent, changed.body)
            answered.append(changed.request_id)
        refused = send(base, "GET", "/v1/customers", [("X-Request-Id", EMAIL)])
        history = httpx.get(f"{base}/v1/customers/{customer}/history",
                            headers={"Authorization": root}).json()  # fmt: skip
    print("answered:", answered)
    stored = [e["correlation_id"] for e in history]
    assert not [c for c in stored if "@" in c or "\x9b" in c or "\t" in c], stored
    assert answered[-1] == OPAQUE  # an opaque id is kept as sent
    assert all(OURS.fullmatch(rid or "") for rid in answered[:-1]), answered
    assert len(set(answered)) == len(answered)
    assert [e["correlation_id"] for e in history] == answered
    assert refused.status == 401  # any answer names its id
    assert OURS.fullmatch(refused.request_id or "")


@contextmanager
def request_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """The log lines meanwhile, with the request's bound context (its `request_id`), as
    `services.logs` writes them (see test_request_line.request_lines)."""
    configured = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            monkeypatch.setattr(observability, "log", structlog.get_logger("crm.api"))
            yield logs
    finally:
        structlog.configure(wrapper_class=configured)


@pytest.mark.parametrize("sent", [EMAIL, OPAQUE, None])
def test_the_request_line_the_answer_and_the_event_name_one_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sent: str | None
) -> None:
    with embedded_api(tmp_path) as api, TestClient(api.app) as client:
        sam = api.token("sam", "sales", "agent")
        named = sam | ({} if sent is None else {"X-Request-Id": sent})
        with request_lines(monkeypatch) as logs:
            made = client.post("/v1/customers", json={"name": "Grace Hopper"}, headers=named)
        assert made.status_code == 201, made.text
        (event,) = api.runtime.app.history(uuid.UUID(made.json()["id"]))
    (line,) = [line for line in logs if line["event"] == "request"]
    print("line:", line["request_id"], "event:", event.correlation_id)
    assert EMAIL not in event.correlation_id
    assert line["request_id"] == event.correlation_id
    assert made.headers.get("x-request-id") == event.correlation_id
    assert (event.correlation_id == OPAQUE) is (sent == OPAQUE)
