"""Commands/s and latency through the service layer on PostgreSQL, with and without
group commit in the same run (16 concurrent callers), then requests/s through HTTP
(uvicorn on loopback) for one command and one query endpoint.

`python -m bench.bench_commands` (needs CRM_DATABASE_URL); `run()` returns the numbers.
Each run uses its own fresh database, dropped afterwards.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

from domain.customer import Customer
from services.bootstrap import Runtime, bootstrap
from services.commands import Caller, CommandService, Committer
from services.group_commit import DirectCommitter, GroupCommitter
from services.logs import configure_logging
from services.policy import Principal, Role
from services.settings import load_settings

CALLER = Caller(
    principal=Principal(name="bench", department="sales", role=Role.SERVICE), correlation_id="b"
)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"crm_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _customers(service: CommandService, count: int) -> list[uuid.UUID]:
    with ThreadPoolExecutor(16) as pool:
        results = pool.map(
            lambda i: service.register_customer(CALLER, name=f"c{i}", owner_department="sales"),
            range(count),
        )
        return [r.id for r in results]


def _load(callers: int, seconds: float, command: Callable[[int, int], None]) -> dict[str, float]:
    """`callers` threads issue commands for `seconds`; throughput and latency."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    stop = time.perf_counter() + seconds

    def worker(caller: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            command(caller, n)
            latencies[caller].append(time.perf_counter() - started)
            n += 1

    began = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(worker, range(callers)))
    elapsed = time.perf_counter() - began
    flat = sorted(x for xs in latencies for x in xs)
    return {
        "per_second": round(len(flat) / elapsed, 1),
        "p50_ms": round(statistics.median(flat) * 1000, 2),
        "p99_ms": round(flat[int(len(flat) * 0.99) - 1] * 1000, 2),
        "count": len(flat),
    }


def _service_layer(
    runtime: Runtime, committer: Committer, ids: list[uuid.UUID], callers: int, seconds: float
) -> dict[str, float]:
    service = CommandService(runtime.app, committer, runtime.keyring)
    share = len(ids) // callers

    def command(caller: int, n: int) -> None:
        customer_id = ids[caller * share + n % share]  # callers never collide
        service.change(
            CALLER,
            "customer.update",
            Customer,
            customer_id,
            lambda c, ctx: c.update_profile(ctx, company=f"co {n}"),
        )

    return _load(callers, seconds, command)


def _http(runtime: Runtime, ids: list[uuid.UUID], callers: int, seconds: float) -> dict[str, Any]:
    import uvicorn

    from services.api import create_app

    app = create_app(runtime)
    token = app.state.services.principals.add("bench-http", "sales", "service")
    server = uvicorn.Server(uvicorn.Config(app, port=18799, log_level="error", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    clients = [
        httpx.Client(
            base_url="http://127.0.0.1:18799", headers={"Authorization": f"Bearer {token}"}
        )
        for _ in range(callers)
    ]
    share = len(ids) // callers

    def patch(caller: int, n: int) -> None:
        url = f"/v1/customers/{ids[caller * share + n % share]}"
        assert clients[caller].patch(url, json={"company": f"h{n}"}).status_code == 200

    def get(caller: int, n: int) -> None:
        url = f"/v1/customers/{ids[caller * share + n % share]}"
        assert clients[caller].get(url).status_code == 200

    try:
        return {"command": _load(callers, seconds, patch), "query": _load(callers, seconds, get)}
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def run(
    database_url: str | None = None,
    *,
    callers: int = 16,
    seconds: float = 5.0,
    customers: int = 3200,
) -> dict[str, Any]:
    server_url = database_url or os.environ["CRM_DATABASE_URL"]
    with fresh_database(server_url) as url, tempfile.TemporaryDirectory() as tmp:
        env = {"CRM_DATABASE_URL": url, "CRM_DATA_DIR": tmp, "CRM_LOG_LEVEL": "warning"}
        settings = load_settings(env)
        configure_logging(settings)  # no per-request log lines in the measurement
        runtime = bootstrap(settings)
        try:
            group = GroupCommitter(
                runtime.app,
                window_ms=settings.group_commit_window_ms,
                max_batch=settings.group_commit_max_batch,
            )
            ids = _customers(CommandService(runtime.app, group, runtime.keyring), customers)
            return {
                "service_layer_direct": _service_layer(
                    runtime, DirectCommitter(runtime.app), ids, callers, seconds
                ),
                "service_layer_group_commit": _service_layer(runtime, group, ids, callers, seconds),
                "http": _http(runtime, ids, callers, seconds),
            }
        finally:
            runtime.close()


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
