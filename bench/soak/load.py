"""HTTP command load that survives faults: every command carries an Idempotency-Key and is
retried with the same key until it is answered, as a careful client would.

Each caller thread runs a small story again and again (a customer is registered and
tagged; a conversation is opened, gets a message, is closed and rated; a task is
created, started and completed), so every projection has work. A 2xx answer is an
*acknowledgement*: the soak and the fault tests later check that each one is stored.
Anything else (a refused connection, a 5xx, a 409 while the first attempt still holds
the key) is retried after `Retry-After` or a short backoff, until `give_up_s`.

I/O: HTTP to the API.
"""

from __future__ import annotations

import functools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRY_STATUSES = {429, 500, 502, 503, 504}
KEY_IN_USE = "idempotency-key-in-use"
"""A 409 whose first attempt still holds the key (or was cut off by an outage): retry."""


@dataclass(frozen=True)
class Ack:
    """An acknowledged command: the aggregate, its new version and global position."""

    aggregate_id: str
    version: int
    position: int


@dataclass
class Tally:
    """What the load saw; every attempt's outcome (a status code or an error's name)."""

    acks: list[Ack] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    gave_up: int = 0
    rejected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1


class CommandLoad:
    """`callers` threads issuing commands until `stop()`; use as a context manager."""

    def __init__(
        self, base_url: str, token: str, *, callers: int = 4, give_up_s: float = 120.0
    ) -> None:
        self.base_url, self.token = base_url, token
        self.give_up_s = give_up_s
        self.tally = Tally()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._caller, name=f"load-{n}", daemon=True)
            for n in range(callers)
        ]

    def __enter__(self) -> CommandLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop after each caller's command in hand is answered (or given up)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.give_up_s + 30)

    @property
    def acked(self) -> int:
        return len(self.tally.acks)

    def _caller(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                self._story(functools.partial(self._command, client))

    def _story(self, post: Callable[[str, dict[str, Any]], Ack | None]) -> None:
        """One customer's story; it ends early where a command was not acknowledged."""
        n = random.randrange(1_000_000)
        body = {"name": f"Soak {n}", "email": f"soak{n}@example.com", "owner_department": "sales"}
        customer = post("/v1/customers", body)
        if customer is None:
            return
        c = customer.aggregate_id
        opened = post(f"/v1/customers/{c}/tags", {"tag": f"t{n % 7}"}) and post(
            "/v1/conversations",
            {"customer_id": c, "channel": "email", "subject": "soak", "department": "support"},
        )
        if opened:
            v = f"/v1/conversations/{opened.aggregate_id}"
            message = {"direction": "inbound", "author": "customer", "content": f"hello {n}"}
            _ = (
                post(f"{v}/messages", message)
                and post(f"{v}/close", {"outcome": "resolved"})
                and post(f"{v}/csat", {"score": 1 + n % 5})
            )
        task = post("/v1/tasks", {"customer_id": c, "title": f"task {n}", "assignee": "soak"})
        if task:
            t = f"/v1/tasks/{task.aggregate_id}"
            _ = post(f"{t}/start", {}) and post(f"{t}/complete", {"resolution": "done"})

    def _command(self, client: httpx.Client, path: str, body: dict[str, Any]) -> Ack | None:
        """POST until answered; the acknowledgement, or None (gave up or refused)."""
        key, deadline, delay = uuid.uuid4().hex, time.monotonic() + self.give_up_s, 0.2
        while time.monotonic() < deadline:
            try:
                response = client.post(path, json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError as error:
                self.tally.count(type(error).__name__)
            else:
                self.tally.count(str(response.status_code))
                if response.is_success:
                    return self._acknowledged(response.json())
                if not _worth_retrying(response):
                    with self.tally.lock:
                        self.tally.rejected.append(f"{path}: {response.text[:200]}")
                    return None
                delay = float(response.headers.get("Retry-After", delay))
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 2.0)
        with self.tally.lock:
            self.tally.gave_up += 1
        return None

    def _acknowledged(self, answer: dict[str, Any]) -> Ack:
        ack = Ack(str(answer["id"]), int(answer["version"]), int(answer["position"]))
        with self.tally.lock:
            self.tally.acks.append(ack)
        return ack


def _worth_retrying(response: httpx.Response) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    if response.status_code != 409:
        return False
    problem = response.json() if response.headers.get("content-type", "").endswith("json") else {}
    return str(problem.get("reason", "")) == KEY_IN_USE
