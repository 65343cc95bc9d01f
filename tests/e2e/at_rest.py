"""Personal data at rest: unique markers through every personal field, and a file scan.

`Markers` makes personal values no file could hold by chance: one random prefix shared
by every text marker (so one search per file finds any of them) and a random phone
number. `exercise` sends them through the API: registration, a profile change, a
conversation's subject, messages (their author and content), a note, a correction and
its reason, a retraction's reason, a hand-off note, the closing summary, survey
comments, a task's title and description, a details change, progress notes, the
resolution and the evaluation's feedback. `scan` lists the files under a directory
holding any of the needles.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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
    _send(client, "POST", f"{c}/notes", {"content": m("note")})
    _send(client, "PATCH", f"{c}/messages/{first}", {"content": m("fix"), "reason": m("why")})
    _send(client, "DELETE", f"{c}/messages/{second['message_id']}?reason={m('retract')}")
    _send(client, "POST", f"{c}/handoffs", {"to_department": "support", "note": m("handoff")})
    _send(client, "POST", f"{c}/close", {"outcome": "resolved", "summary": m("summary")})
    _send(client, "POST", f"{c}/csat", {"score": 5, "comment": m("csat")})
    _send(client, "POST", f"{c}/nps", {"score": 9, "comment": m("nps")})
    created = {"customer_id": customer, "title": m("title"), "description": m("desc"),
               "department": "sales", "assignee": "zoe"}  # fmt: skip
    t = "/v1/tasks/" + _send(client, "POST", "/v1/tasks", created)["id"]
    _send(client, "PATCH", t, {"title": m("title2"), "description": m("desc2")})
    _send(client, "POST", f"{t}/start")
    _send(client, "POST", f"{t}/progress", {"note": m("progress"), "percent": 50})
    _send(client, "POST", f"{t}/complete", {"resolution": m("resolution")})
    last = _send(client, "POST", f"{t}/evaluation", {"score": 4, "feedback": m("feedback")})
    return str(customer), int(last["position"])


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
    queue = client.get(f"/v1/departments/support/conversations?status=closed&{wait}")
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
