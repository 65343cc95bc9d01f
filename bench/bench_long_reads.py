"""What one client reading the longest answers takes from everyone else's requests.

A conversation holds at most `MAX_ENTRIES` messages and `CONVERSATION_TEXT` bytes of
text, and a customer at most `MAX_ORDERS` orders; a GET answers all of them. A timeline
entry may hold a message of 64 kB, and a page up to 500 entries. One such conversation
(10,000 messages of ~390 characters, 5.4 MB as JSON), one such customer (10,000 orders,
1.8 MB) and a customer of 540 messages of 64 kB (its timeline page, `?limit=500`) are
stored, the read models filled, and `crm api` (PostgreSQL, uvicorn, one worker) serves
them. For each, `wrk` drives the ceiling (`GET /v1/ping`, 4 connections) alone,
the baseline, and beside a second `wrk` reading the long answer over and over on one
connection, as a single client can; rounds alternate the two. Reported: the ceiling's
requests/s and p99 alone and beside (the ratio says what the one client takes), and
how long one long read takes.

`python -m bench long_reads [--quick]` (harness; needs CRM_DATABASE_URL) or `make bench`.
I/O: a fresh database and a temporary data directory; starts `crm api`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from bench import wrk
from bench.databases import fresh_database
from bench.http_data import fill_read_models
from bench.http_servers import Served, served
from domain import fields as bound
from domain.base import Context
from domain.conversation import Conversation
from domain.customer import Customer
from services.access.rules import Role
from services.bootstrap import bootstrap
from services.event_store import CrmApplication
from services.principals_store import open_principals
from services.settings import load_settings

SECONDS = {False: 8, True: 3}  # by `quick`
ROUNDS = 2
CONNECTIONS = 4  # the other clients' (the ceiling's): not saturating the loop alone
MESSAGE = "x" * 380  # with its number: 10,000 of them fill ~CONVERSATION_TEXT
TIMELINE_ENTRIES = 540  # more than a page's `limit` (500) of the largest messages


def run(database_url: str, kafka_bootstrap: str = "", quick: bool = False) -> dict[str, Any]:
    seconds = SECONDS[quick]
    figures: dict[str, Any] = {"seconds_per_run": seconds, "rounds": ROUNDS}
    with tempfile.TemporaryDirectory() as tmp, fresh_database(database_url) as url:
        env = {"CRM_DATA_DIR": str(Path(tmp) / "data"), "CRM_DATABASE_URL": url}
        token, paths = _seeded(env)
        with served(env, Path(tmp), embedded=False, server="uvicorn") as api:
            for name, path in paths.items():
                figures[name] = _beside(api, token, path, seconds)
    return figures


def _seeded(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A sales manager's token, and the paths of the longest answers (read models filled)."""
    runtime = bootstrap(load_settings(env))
    try:
        ada = Customer.register(
            _ctx(0), customer_id=uuid4(), name="Ada", email="a@x.org", owner_department="sales"
        )
        talk = Conversation.open(
            _ctx(0), conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
        )
        runtime.app.record(ada)
        for n in range(bound.MAX_ENTRIES):
            talk.log_message(_ctx(n), message_id=f"m{n}", direction="inbound", author="Ada",
                             content=f"{MESSAGE} {n}")  # fmt: skip
            ada.record_order(_ctx(n), order_id=f"order-{n}", amount="12345.6789", currency="EUR")
            if n % 1_000 == 999:
                runtime.app.record(ada, talk)
        bo = _long_messages(runtime.app)
        fill_read_models(runtime)
        principals = open_principals(runtime.pool, runtime.settings.data_dir)
        token = principals.add("bench-manager", "sales", Role.MANAGER)
        return token, {
            "conversation": f"/v1/conversations/{talk.id}",
            "customer": f"/v1/customers/{ada.id}",
            "timeline": f"/v1/customers/{bo}/timeline?limit=500",
        }
    finally:
        runtime.close()


def _long_messages(app: CrmApplication) -> UUID:
    """A customer with `TIMELINE_ENTRIES` messages of `bound.MESSAGE` characters, in as
    few conversations as their text bound allows: its timeline's entries are the
    largest there are."""
    bo = Customer.register(
        _ctx(0), customer_id=uuid4(), name="Bo", email="b@x.org", owner_department="sales"
    )
    app.record(bo)
    text = "z" * (bound.MESSAGE - 8)
    per_conversation = bound.CONVERSATION_TEXT // bound.MESSAGE
    for first in range(0, TIMELINE_ENTRIES, per_conversation):
        talk = Conversation.open(
            _ctx(first), conversation_id=uuid4(), customer=bo, channel="email", subject="Big"
        )
        for n in range(first, min(first + per_conversation, TIMELINE_ENTRIES)):
            talk.log_message(_ctx(n), message_id=f"m{n}", direction="inbound", author="Bo",
                             content=f"{text}{n:08d}")  # fmt: skip
        app.record(talk)
    return bo.id


def _ctx(n: int) -> Context:
    return Context(
        actor="bench",
        actor_department="sales",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
        correlation_id="bench",
    )


def _beside(api: Served, token: str, path: str, seconds: int) -> dict[str, Any]:
    """The ceiling alone and beside one client reading `path` in a loop, alternated."""
    size = _first_read(api, token, path)  # stores its snapshot, as a first read does
    alone: list[dict[str, Any]] = []
    beside: list[dict[str, Any]] = []
    long: list[dict[str, Any]] = []
    with ThreadPoolExecutor(1) as reader:
        for _ in range(ROUNDS):
            alone.append(_ceiling(api, token, seconds))
            reading = reader.submit(
                wrk.run, api.base_url, connections=1, seconds=seconds + 2, token=token, path=path
            )
            time.sleep(1.0)  # the reader under way first
            beside.append(_ceiling(api, token, seconds))
            long.append(reading.result())

    def median(runs: list[dict[str, Any]], key: str) -> float:
        value: float = statistics.median(run[key] for run in runs)
        return round(value, 2)

    return {
        "answer_bytes": size,
        "ceiling_alone_requests_per_s": median(alone, "requests_per_s"),
        "ceiling_beside_requests_per_s": median(beside, "requests_per_s"),
        "ratio_beside_alone": round(
            median(beside, "requests_per_s") / median(alone, "requests_per_s"), 3
        ),
        "ceiling_alone_p99_ms": median(alone, "p99_ms"),
        "ceiling_beside_p99_ms": median(beside, "p99_ms"),
        "long_read_p50_ms": median(long, "p50_ms"),
        "long_reads_per_s": median(long, "requests_per_s"),
        "failed_requests": sum(r["non_2xx"] + r["socket_errors"] for r in alone + beside + long),
    }


def _ceiling(api: Served, token: str, seconds: int) -> dict[str, Any]:
    return wrk.run(
        api.base_url, connections=CONNECTIONS, seconds=seconds, token=token, path="/v1/ping"
    )


def _first_read(api: Served, token: str, path: str) -> int:
    request = urllib.request.Request(  # noqa: S310 (the bench's own server on loopback)
        api.base_url + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        return len(answer.read())
