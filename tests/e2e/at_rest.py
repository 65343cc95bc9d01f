"""Personal data at rest: unique markers through every personal field, and a file scan.

`Markers` makes personal values no file could hold by chance: one random prefix shared
by every text marker (so one search per file finds any of them) and a random phone
number. `exercise` sends them through the API: registration, a profile change, a
conversation's subject, messages (their author and content), a note, a correction and
its reason, a retraction's reason, a hand-off note, the closing summary, survey
comments, a reopening's reason, a task's title and description, a details change,
progress notes, the resolution, the evaluation's feedback, the reasons of a reopening, a
reassignment and a cancellation, and a message long enough for PostgreSQL to compress a
plaintext copy of it (which a file scan would then miss; the row sweeps do not);
`endings` the reasons of another customer's archiving and of a third's erasure.
`refusals` sends them where the API refuses them (schema and domain validation, a reused
Idempotency-Key, a stale If-Match, searches, a body that is not JSON...): the caller
gets a problem, and no log may echo the value.

Where they must not be: `scan` lists the files under a directory holding any needle
(the stores' files, the processes' logs); `rows_holding` every table of every schema
of a PostgreSQL database with a row holding one (as text, bytea as hex: whatever a
table compresses); `records_holding` every topic of a prefix with a record holding
one (key, value or header).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from consumers.kafka_io import list_topics, read_all

CHUNK = 1 << 22


@dataclass
class Markers:
    prefix: str = field(default_factory=lambda: "zq" + secrets.token_hex(6))
    phone_digits: str = field(default_factory=lambda: "4930" + str(secrets.randbelow(10**9)))

    def __call__(self, what: str) -> str:
        return f"{self.prefix}{what}"

    @property
    def phone(self) -> str:
        return "+" + self.phone_digits

    @property
    def needles(self) -> list[bytes]:
        return [self.prefix.encode(), self.phone_digits.encode()]


def exercise(client: httpx.Client, m: Markers) -> tuple[str, int]:
    """Every kind of personal field through the API, as an admin (who may do all);
    the customer's id and the last command's position."""
    customer = _send(client, "POST", "/v1/customers", {
        "name": m("name Alpha"), "email": m("mail") + "@example.com", "phone": m.phone,
        "address": m("addr"), "owner_department": "sales", "company": "Acme",
    })["id"]  # fmt: skip
    _send(client, "PATCH", f"/v1/customers/{customer}", {"name": m("name2"), "address": m("a2")})
    opened = {"customer_id": customer, "channel": "email", "subject": m("subj"),
              "department": "sales"}  # fmt: skip
    conversation = _send(client, "POST", "/v1/conversations", opened)["id"]
    c = f"/v1/conversations/{conversation}"
    inbound = {"direction": "inbound", "author": m("author"), "content": m("msg")}
    first = _send(client, "POST", f"{c}/messages", inbound)["message_id"]
    second = _send(client, "POST", f"{c}/messages", inbound | {"content": m("msg2")})
    _send(client, "POST", f"{c}/messages", inbound | {"content": m("long ") * 400})  # 8 kB
    _send(client, "POST", f"{c}/notes", {"content": m("note")})
    _send(client, "PATCH", f"{c}/messages/{first}", {"content": m("fix"), "reason": m("why")})
    _send(client, "DELETE", f"{c}/messages/{second['message_id']}?reason={m('retract')}")
    _send(client, "POST", f"{c}/handoffs", {"to_department": "support", "note": m("handoff")})
    _send(client, "POST", f"{c}/close", {"outcome": "resolved", "summary": m("summary")})
    _send(client, "POST", f"{c}/csat", {"score": 5, "comment": m("csat")})
    _send(client, "POST", f"{c}/nps", {"score": 9, "comment": m("nps")})
    _send(client, "POST", f"{c}/reopen", {"reason": m("reopened")})
    created = {"customer_id": customer, "title": m("title"), "description": m("desc"),
               "department": "sales", "assignee": "zoe"}  # fmt: skip
    t = "/v1/tasks/" + _send(client, "POST", "/v1/tasks", created)["id"]
    _send(client, "PATCH", t, {"title": m("title2"), "description": m("desc2")})
    _send(client, "POST", f"{t}/start")
    _send(client, "POST", f"{t}/progress", {"note": m("progress"), "percent": 50})
    _send(client, "POST", f"{t}/complete", {"resolution": m("resolution")})
    _send(client, "POST", f"{t}/evaluation", {"score": 4, "feedback": m("feedback")})
    _send(client, "POST", f"{t}/reopen", {"reason": m("again")})
    _send(client, "POST", f"{t}/assignment", {"assignee": "amy", "reason": m("handover")})
    last = _send(client, "POST", f"{t}/cancel", {"reason": m("cancelled")})
    return str(customer), int(last["position"])


def endings(client: httpx.Client, m: Markers) -> int:
    """Markers through the reasons of two more customers' ends: one archived, one
    erased; the last command's position."""
    for other, reason in (("archived", "archive"), ("erased", "erasure")):
        registered = {"name": m(other), "owner_department": "sales"}
        gone = _send(client, "POST", "/v1/customers", registered)["id"]
        if other == "archived":
            _send(client, "DELETE", f"/v1/customers/{gone}?reason={m(reason)}")
            history = client.get(f"/v1/customers/{gone}/history").text
            assert m(reason) in history, history  # sealed, and opened for an admin
    last = _send(client, "POST", f"/v1/customers/{gone}/erasure", {"reason": m(reason)})
    return int(last["position"])


def refusals(client: httpx.Client, m: Markers, customer: str) -> None:
    """Markers where the API refuses them, or finds nothing with them: each a 4xx (or an
    empty search), and none leaves the request."""
    sales, bad_json = {"owner_department": "sales"}, {"content-type": "application/json"}
    text = {"content-type": "text/plain"}
    refused: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/customers", {"json": sales | {"name": m("n"), "email": m("e") + "@@x"}}),
        ("POST", "/v1/customers", {"json": sales | {"name": m("n"), "phone": m("p")}}),
        ("POST", "/v1/customers", {"json": sales | {"name": m("long") * 40}}),
        ("POST", "/v1/customers", {"json": sales | {"name": m("ctl") + "\x01"}}),
        ("POST", "/v1/customers", {"json": sales | {"name": "enc:v1:" + m("sealed")}}),
        ("POST", "/v1/customers", {"json": sales | {"name": m("n"), "extra": m("extra")}}),
        ("POST", "/v1/customers", {"content": '{"name": "' + m("cut"), "headers": bad_json}),
        ("POST", "/v1/customers", {"content": m("text"), "headers": text}),
        ("POST", "/v1/customers", {"json": {"name": m("big") * 100_000}}),
        ("PATCH", f"/v1/customers/{customer}", {"json": {"name": m("stale")},
                                                 "headers": {"If-Match": '"1"'}}),
        ("GET", "/v1/customers", {"params": {"email": m("x") * 300}}),
        ("GET", "/v1/customers", {"params": {"name": m("nul") + "\x00"}}),
        ("POST", "/v1/conversations", {"json": {"customer_id": customer, "channel": "email",
                                                "subject": m("s"), "department": m("d")}}),
    ]  # fmt: skip
    for method, url, options in refused:
        answer = client.request(method, url, **options)
        assert 400 <= answer.status_code < 500, (method, url, answer.text)
    keyed = {"Idempotency-Key": "signup-1"}  # events carry its keyed digest, not the key
    first = client.post("/v1/customers", json=sales | {"name": m("idem")}, headers=keyed)
    assert first.status_code == 201, first.text
    reused = client.post("/v1/customers", json=sales | {"name": m("idem2")}, headers=keyed)
    assert reused.status_code == 409, reused.text
    found = client.get("/v1/customers", params={"email": m("none") + "@example.com"})
    assert found.json()["items"] == [], found.text


def rows_holding(database_url: str, needles: list[bytes]) -> list[str]:
    """`schema.table` of every table (and materialised view) of the database, in any
    schema but the system's, holding a needle in any row: each row read as text, so a
    value PostgreSQL compressed or moved out of line counts; bytea shows as hex."""
    forms = [form for n in needles for form in (n.decode(), n.hex())]
    found: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchall()
        assert tables, "no table to sweep"
        for schema, name in tables:
            rows = conn.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, name))
            )
            if any(form in row for (row,) in rows for form in forms):
                found.append(f"{schema}.{name}")
    return found


def records_holding(bootstrap: str, prefix: str, needles: list[bytes]) -> list[str]:
    """Every topic named with `prefix` having a record that holds a needle in its key,
    value or headers (read through the client: whatever the broker compressed)."""
    topics = [name for name in list_topics(bootstrap) if name.startswith(prefix)]
    assert topics, f"no topic of {prefix}"
    found: set[str] = set()
    records = list(read_all(bootstrap, topics))
    assert records, f"no record on the topics of {prefix}"
    for record in records:
        parts = [record.key or b"", record.value or b""]
        parts += [name.encode() + (value or b"") for name, value in record.headers]
        if any(needle in part for part in parts for needle in needles):
            found.add(record.topic)
    return sorted(found)


def _send(client: httpx.Client, method: str, url: str, body: Any = None) -> dict[str, Any]:
    response = client.request(method, url, json=body)
    assert response.status_code in (200, 201), (method, url, response.text)
    answer: dict[str, Any] = response.json()
    return answer


def caught_up(client: httpx.Client, customer: str, position: int, m: Markers) -> None:
    """Wait until the read models the API serves applied `position`; they open the
    markers for an admin, so the values did reach the read models (only sealed)."""
    wait = f"min_position={position}"
    timeline = client.get(f"/v1/customers/{customer}/timeline?{wait}&limit=500")
    assert timeline.status_code == 200, timeline.text
    assert m("feedback") in timeline.text
    assert m("fix") in timeline.text
    listed = client.get(f"/v1/departments/sales/customers?{wait}")
    assert m("name2") in listed.text, listed.text
    queue = client.get(f"/v1/departments/support/conversations?status=open&{wait}")
    assert m("subj") in queue.text, queue.text


def scan(root: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
    """(file, needle) for `root` if it is a file, or every regular file under it, holding
    a needle. Files that vanish meanwhile (other tests' topics and databases) are
    skipped; one that cannot be read fails the scan."""
    if root.is_file():
        return [(str(root), needle) for needle in _holds(root, needles)]
    found: list[tuple[str, bytes]] = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                found += [(str(path), needle) for needle in _holds(path, needles)]
    return found


def _holds(path: Path, needles: list[bytes]) -> set[bytes]:
    overlap = max(len(n) for n in needles) - 1
    seen: set[bytes] = set()
    tail = b""
    try:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK):
                window = tail + chunk
                seen |= {n for n in needles if n in window}
                tail = window[-overlap:]
    except FileNotFoundError:
        return set()
    return seen
