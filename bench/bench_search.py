"""Customer search at N customers, a department page for an agent against an analyst,
and projection replay with sealed read models against opening in the consumer.

The `shared` and `marketing` read models of N customers (1,000,000; quick: 20,000) are
written with COPY, rows and blind-index terms made by the real projections, keyring
and search key (`bench.search_data`), in a fresh PostgreSQL database. Then, one request
at a time, each after a warm-up:

* `search`: an exact e-mail, an exact phone and a whole name (its three words, the first
  shared by a tenth of all customers; a tenth as many searches) of a stored customer
  drawn at random, through `ReadModels.search` as `Reader.search` calls
  it (the query's terms under the search key, the SQL of `consumers.search_queries`, a
  50-row page) for a caller of every department (analysts, admins); each answer must
  hold the customer. Target: p99 <= 10 ms for e-mail and phone at 1 M customers.
* `request`: the same e-mail and phone searches through the whole app in this process
  (an ASGI client: routing, token check, access model, awaited query, opening, access
  log), as a sales agent looking for sales customers: what the query path costs inside
  a request.
* `page`: `GET /v1/departments/sales/customers`, 50 rows from random cursors, for a
  sales agent (personal columns opened with the page's keys, one key query) and for an
  analyst (masked, never opened), the same pages in alternating rounds; the ratio of
  their per-page latencies, and `open_rows` of such a page alone.
* `replay`: `bench.sealed_replay` (200,000 events; quick: 20,000).

`python -m bench search [--quick]` or `crm bench search [--quick]` (needs
CRM_DATABASE_URL and CRM_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any
from urllib.parse import urlencode

from litestar import Litestar
from litestar.testing import AsyncTestClient

from bench import sealed_replay
from bench.databases import fresh_database
from bench.latency import figures
from bench.search_data import Probe, sample, seed
from consumers.blind_index import BlindIndex
from consumers.follower import applied_position
from consumers.keyring import Keyring
from consumers.sealed_rows import open_rows
from consumers.store_postgres import PostgresStore
from services.access.findable import Findable
from services.api import create_app
from services.api.read_models import PERSONAL, ReadModels
from services.bootstrap import bootstrap
from services.logs import configure_logging
from services.settings import Settings, load_settings

TARGET_P99_MS = 10.0
Client = AsyncTestClient[Litestar]
ROUND = 25
"""Pages per turn of the agent and the analyst before the other takes over."""


def time_calls(calls: Iterable[Callable[[], object]]) -> dict[str, float]:
    """Each call timed alone, one after the other; figures of the lot."""
    latencies: list[float] = []
    started = time.perf_counter()
    for call in calls:
        began = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - began)
    return figures(latencies, time.perf_counter() - started)


def search_once(models: ReadModels, index: BlindIndex, field: str, probe: Probe) -> None:
    """One search as `Reader.search` makes it, for any department; it must find `probe`."""
    terms = index.wanted(field, getattr(probe, field))
    anyone = Findable(department=None, consenting=False)
    page = models.search(
        terms=terms, company=None, tag=None, findable=anyone, cursor=None, limit=50
    )
    assert probe.customer_id in {row["customer_id"] for row in page["items"]}, (field, probe)


def time_searches(models: ReadModels, keyring: Keyring, probes: list[Probe], count: int) -> Any:
    """Searches by each field, for customers drawn at random, after a warm-up."""
    index = BlindIndex(keyring.search_key())
    found: dict[str, Any] = {}
    for field in ("email", "phone", "name"):
        time_calls(partial(search_once, models, index, field, p) for p in sample(probes, 50, 1))
        timed = sample(probes, count // 10 if field == "name" else count, seed=2)
        found[field] = time_calls(partial(search_once, models, index, field, p) for p in timed)
    found["target_p99_ms"] = TARGET_P99_MS
    return found


def time_opening(models: ReadModels, keyring: Keyring, cursors: list[str]) -> dict[str, float]:
    """`open_rows` of fetched 50-row pages alone: one key query, four fields a row."""
    pages = [models.customers("sales", tag=None, cursor=c, limit=50)["items"] for c in cursors]
    personal = PERSONAL["customers"]
    return time_calls(
        partial(open_rows, keyring, [(dict(row), personal) for row in rows]) for rows in pages
    )


Calls = list[tuple[str, dict[str, str]]]
"""(path, headers) of GET requests."""


async def _timed(client: Client, calls: Calls) -> tuple[list[float], float]:
    """Each request's seconds (one at a time, each must answer 200) and the total."""
    latencies: list[float] = []
    started = time.perf_counter()
    for path, headers in calls:
        began = time.perf_counter()
        response = await client.get(path, headers=headers)
        latencies.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text
    return latencies, time.perf_counter() - started


async def _searches(client: Client, agent: dict[str, str], probes: list[Probe], count: int) -> Any:
    """E-mail and phone searches of sales customers as a sales agent, after a warm-up."""
    sales = [p for p in probes if p.department == "sales"]
    found: dict[str, Any] = {}
    for field in ("email", "phone"):
        paths = [f"/v1/customers?{urlencode({field: getattr(p, field)})}" for p in sales]
        await _timed(client, [(path, agent) for path in paths[:50]])
        timed = [(path, agent) for path in random.Random(3).choices(paths, k=count)]
        found[field] = figures(*await _timed(client, timed))
    return found


async def _pages(client: Client, callers: dict[str, dict[str, str]], pages: list[str]) -> Any:
    """The same pages for each caller, `ROUND` at a time in turn, after a warm-up."""
    for headers in callers.values():
        await _timed(client, [(path, headers) for path in pages[:ROUND]])
    latencies: dict[str, list[float]] = {name: [] for name in callers}
    seconds = dict.fromkeys(callers, 0.0)
    for start in range(0, len(pages), ROUND):
        for name, headers in callers.items():
            timed = await _timed(client, [(p, headers) for p in pages[start : start + ROUND]])
            latencies[name] += timed[0]
            seconds[name] += timed[1]
    return {name: figures(latencies[name], seconds[name]) for name in callers}


async def time_requests(app: Litestar, probes: list[Probe], cursors: list[str], count: int) -> Any:
    """Searches as a sales agent; the same department pages for an agent and an analyst."""
    principals = app.state.services.principals
    callers = {
        role: {"Authorization": f"Bearer {principals.add(f'bench-{role}', 'sales', role)}"}
        for role in ("agent", "analyst")
    }
    pages = [f"/v1/departments/sales/customers?limit=50&cursor={c}" for c in cursors]
    async with AsyncTestClient(app) as client:
        searches = await _searches(client, callers["agent"], probes, count)
        page = await _pages(client, callers, pages)
    agent, analyst = page["agent"], page["analyst"]
    page["ratio_agent_to_analyst_p50"] = round(agent["p50_ms"] / analyst["p50_ms"], 3)
    page["ratio_agent_to_analyst_per_s"] = round(agent["per_second"] / analyst["per_second"], 3)
    return {"request_search_as_agent": searches, "page": page}


def cursors(count: int, seed: int) -> list[str]:
    """Random customer ids in the lower 90 % of the id space: every page is a full 50."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.randrange(int(2**128 * 0.9)))) for _ in range(count)]


def quiet(settings: Settings) -> None:
    """No log line per request or batch (nor the test client's): they would be most of
    what a terminal shows, and printing them is no part of the paths measured."""
    configure_logging(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def reads(database_url: str, customers: int, searches: int, pages: int) -> dict[str, Any]:
    """Seed `customers` into a fresh database; time searches, opening and requests."""
    result: dict[str, Any] = {"customers": customers}
    with fresh_database(database_url) as url, tempfile.TemporaryDirectory() as data_dir:
        env = {"CRM_DATABASE_URL": url, "CRM_DATA_DIR": data_dir, "CRM_LOG_LEVEL": "warning"}
        quiet(load_settings(env))
        runtime = bootstrap(load_settings(env))
        store = PostgresStore(url)
        try:
            assert runtime.pool is not None
            started = time.perf_counter()
            seeded = seed(store, runtime.pool, customers, probes=2000)
            result["seed_s"] = round(time.perf_counter() - started, 1)
            models = ReadModels(store)
            result["search"] = time_searches(models, runtime.keyring, seeded.probes, searches)
            result["open_page"] = time_opening(models, runtime.keyring, cursors(pages, 4))
            app = create_app(
                runtime, queries_helper=models, applied_position=partial(applied_position, store)
            )
            result |= asyncio.run(time_requests(app, seeded.probes, cursors(pages, 5), searches))
        finally:
            store.close()
            runtime.close()
    return result


def run(database_url: str, kafka_bootstrap: str, quick: bool = False) -> dict[str, Any]:
    customers, searches, pages, events = (
        (20_000, 300, 200, 20_000) if quick else (1_000_000, 2000, 1000, 200_000)
    )
    result = reads(database_url, customers, searches, pages)
    result["replay"] = sealed_replay.run(database_url, kafka_bootstrap, events)
    return result
