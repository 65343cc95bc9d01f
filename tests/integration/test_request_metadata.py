"""What events keep of a request's headers: never what the client wrote.

X-Request-Id and Idempotency-Key reached every event's metadata as sent: the
hash-chained log and Kafka for good (no erasure reaches metadata), `/history` and the
event stream, an analyst's too. A client that names a request after its person
(`Idempotency-Key: signup-grace.hopper@example.com`) stored the e-mail there; C1 control
characters got through a real uvicorn into the log. Now an X-Request-Id is the request's
id only when it is an opaque id (else the API makes one, and the answer names the one
used); events carry a keyed digest of the Idempotency-Key (red team)."""

from __future__ import annotations

import json
import logging
import re
import tempfile
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from litestar.testing import TestClient
from structlog.testing import capture_logs

from consumers.envelope import to_record
from services.api import observability
from services.idempotency import Idempotency
from tests.integration.api_support import EmbeddedApi, embedded_api, send_raw, served

EMAIL = "grace.hopper@example.com"
KEY = f"signup-{EMAIL}"
OURS = re.compile(r"[0-9a-f]{32}")
DIGEST = re.compile(r"hmac:[0-9a-f]{32}")
OPAQUE = "0B7C3B9E-0D6F-4F7E-9A53-2F0C6D7E8A91"


def stored_states(api: EmbeddedApi) -> list[bytes]:
    """Every event as the log holds it (what the relay puts on Kafka)."""
    recorder = api.runtime.app.recorder
    return [n.state for n in recorder.select_notifications(start=1, limit=1000)]


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
        made = send_raw(base, "POST", "/v1/customers", auth, b'{"name": "Grace Hopper"}')
        assert made.status == 201, made.body
        customer = json.loads(made.body)["id"]
        answered = [made.headers.get("x-request-id")]
        for n, sent in enumerate([*HOSTILE, OPAQUE]):
            body = b'{"company": "C%d"}' % n
            headers = [*auth, ("X-Request-Id", sent)]
            changed = send_raw(base, "PATCH", f"/v1/customers/{customer}", headers, body)
            assert changed.status == 200, (sent, changed.body)
            answered.append(changed.headers.get("x-request-id"))
        refused = send_raw(base, "GET", "/v1/customers", [("X-Request-Id", EMAIL)])
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
    assert OURS.fullmatch(refused.headers.get("x-request-id", ""))


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


def _events(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    found, fields = [], {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        elif "data" in fields:
            found.append(json.loads(fields["data"]))
            fields = {}
            if len(found) == count:
                break
    return found


def test_an_idempotency_key_reaches_no_event_stream_or_log_and_outlives_no_erasure() -> None:
    """The red team's case: an analyst's stream, `/history` after the erasure, the stored
    log and the Kafka record hold neither the e-mail nor the key; the events carry the
    key's digest under the principal, and a retry still gets the stored answer."""
    with tempfile.TemporaryDirectory() as tmp, embedded_api(Path(tmp)) as api:
        sam = api.token("sam", "sales", "agent")
        ann = api.token("ann", "analytics", "analyst")
        root = api.token("root", "sales", "admin")
        keyed = sam | {"Idempotency-Key": KEY, "X-Request-Id": EMAIL}
        body = {"name": "Grace Hopper", "email": EMAIL}
        with served(api.app) as base, httpx.Client(base_url=base, timeout=10) as http:
            with http.stream("GET", "/v1/events/stream?department=sales", headers=ann) as live:
                made = http.post("/v1/customers", json=body, headers=keyed)
                assert made.status_code == 201, made.text
                seen = _events(live.iter_lines(), 1)[0]
            again = http.post("/v1/customers", json=body, headers=keyed)
            customer = made.json()["id"]
            tagged = http.post(f"/v1/customers/{customer}/tags", json={"tag": "vip"},
                               headers=sam | {"Idempotency-Key": KEY + "-tag"})  # fmt: skip
            assert tagged.status_code in (200, 201), tagged.text
            erased = http.post(f"/v1/customers/{customer}/erasure", json={}, headers=root)
            assert erased.status_code == 200, erased.text
            history = http.get(f"/v1/customers/{customer}/history", headers=root).json()
        events = api.runtime.app.history(uuid.UUID(customer))
        states = stored_states(api)
        records = [to_record(event, n)[1] for n, event in enumerate(events, 1)]
        keys: Idempotency = api.app.state.services.idempotency
    print("analyst's stream:", {k: seen[k] for k in ("email", "correlation_id", "idempotency_key")})
    print("history:", [(e["type"], e["correlation_id"], e["idempotency_key"]) for e in history])
    assert (again.status_code, again.json()) == (201, made.json())  # the stored answer
    assert len(events) == 3  # registered, tagged, erased: the retry stored nothing
    assert seen["email"] == "[masked]"
    for where, text in [("stream", json.dumps(seen)), ("history", json.dumps(history)),
                        ("log", repr(states)), ("kafka", repr(records))]:  # fmt: skip
        for written in ("grace", "hopper", "signup"):
            assert written not in text.lower(), f"{written!r} in the {where}"
    assert all(DIGEST.fullmatch(str(e.idempotency_key)) for e in events[:2])
    assert seen["idempotency_key"] == keys.event_key("sam", KEY)
    assert [e["idempotency_key"] for e in history] == [
        keys.event_key("sam", KEY), keys.event_key("sam", KEY + "-tag"), None
    ]  # fmt: skip
