"""HTTP requests/s and latency of `crm api` (PostgreSQL) and `crm run` (embedded), each
endpoint beside the same run's ceiling, with `wrk` (a native load generator).

The ceiling is `GET /v1/ping`: the same server, app, middleware, token check and
access-model decision as every route, and no store. Each endpoint's ratio is its
requests/s over the mean of the ceiling measured just before and just after the
endpoints (the spread of the two says how much the machine drifted meanwhile).

Endpoints (`ENDPOINTS`), as a `sales` manager (reads judged row by row):
`PATCH /v1/customers/{id}` (a unique company each), `POST /v1/conversations/{id}/messages`,
`GET /v1/customers/{id}` (customers with a 10-event history), `GET
/v1/departments/sales/customers` (a 50-row page) and `GET /v1/stats/satisfaction`
(weekly CSAT and NPS over the workload's months), at 16 and 64 connections, once each
server has touched every id in turn (steady state: its caches hold what a long-running
API's would).

Servers (`SERVERS`): PostgreSQL with uvicorn and granian, one worker and two; embedded
(SQLite) with both servers. Each store is seeded once (`bench.http_data`) and shared by
its servers in turn. Besides requests/s and p50/p90/p99, each figure has the server's
CPU per request (all its processes, from /proc): on a shared machine, the steadier one.

`python -m bench http [--quick]` (harness; needs CRM_DATABASE_URL) or `make bench`.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from bench import wrk
from bench.databases import fresh_database
from bench.http_data import Seeded, seed
from bench.http_servers import Served, served
from bench.proc import pin_apart
from services.settings import load_settings


class Endpoint(NamedTuple):
    method: str
    path: str
    body: str = ""
    ids: str = ""  # "customers" | "conversations" | "readers": where {id} comes from


CEILING = Endpoint("GET", "/v1/ping")
ENDPOINTS = {
    "patch_customer": Endpoint(
        "PATCH", "/v1/customers/{id}", '{"company": "Company {n}"}', "customers"
    ),
    "post_message": Endpoint(
        "POST",
        "/v1/conversations/{id}/messages",
        '{"direction": "outbound", "author": "bench", "content": "Message {n}"}',
        "conversations",
    ),
    "get_customer": Endpoint("GET", "/v1/customers/{id}", ids="readers"),
    "department_page": Endpoint("GET", "/v1/departments/sales/customers?limit=50"),
    "satisfaction": Endpoint("GET", "/v1/stats/satisfaction?department=sales&granularity=week"),
}
ACCESS_LOGGED = {name: ENDPOINTS[name] for name in ("get_customer", "department_page")}
"""Reads that show personal data unmasked, each recorded in the access log."""
CONNECTIONS = (16, 64)
WARM_UP_RATE = 400  # requests/s a warm-up is planned for (the slowest endpoints' rate)
SERVERS = {
    "postgres": [("uvicorn", 1), ("granian", 1), ("uvicorn", 2), ("granian", 2)],
    "embedded": [("uvicorn", 1), ("granian", 1)],
}


class Sizes(NamedTuple):
    seconds: int
    events: int
    customers: int
    readers: int
    conversations: int


FULL = Sizes(seconds=8, events=20_000, customers=2000, readers=1000, conversations=200)
QUICK = Sizes(seconds=2, events=3000, customers=300, readers=200, conversations=50)


def run(database_url: str, kafka_bootstrap: str = "", quick: bool = False) -> dict[str, Any]:
    """Every store and server (Kafka is not involved: `kafka_bootstrap` is unused)."""
    sizes = QUICK if quick else FULL
    figures: dict[str, Any] = {
        "load_average_before": os.getloadavg()[0],
        "seconds_per_run": sizes.seconds,
        "workload_events": sizes.events,
    }
    with tempfile.TemporaryDirectory() as tmp, fresh_database(database_url) as url:
        logs = Path(tmp)
        for store in SERVERS:
            env = {"CRM_DATA_DIR": str(logs / f"data-{store}")}
            env["CRM_DATABASE_URL"] = url if store == "postgres" else ""
            figures[store] = _store(env, logs, seeded_store(env, sizes), store, sizes.seconds)
    figures["load_average_after"] = os.getloadavg()[0]
    print("\n".join(table(figures)), flush=True)
    return figures


def seeded_store(env: dict[str, str], sizes: Sizes) -> Seeded:
    """The store `env` names, seeded with the workload and targets `sizes` gives."""
    return seed(
        load_settings(env),
        events=sizes.events,
        customers=sizes.customers,
        readers=sizes.readers,
        conversations=sizes.conversations,
    )


def table(figures: dict[str, Any]) -> list[str]:
    """The figures as a Markdown table: one row per store, server, connections, endpoint."""
    lines = [
        "| store | server | conns | endpoint | requests/s | ratio | p50 / p99 ms | CPU us/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for store in SERVERS:
        for server, by_connections in figures[store].items():
            if server == "access_log_cost":
                continue
            for connections, endpoints in by_connections.items():
                for name, f in endpoints.items():
                    failed = f["non_2xx"] + f["socket_errors"]
                    lines.append(
                        f"| {store} | {server} | {connections[1:]} | {name}"
                        + (f" ({failed} failed)" if failed else "")
                        + f" | {f['requests_per_s']:,.0f} | {f.get('ratio', '')}"
                        + f" | {f['p50_ms']} / {f['p99_ms']} | {f['server_cpu_us_per_request']} |"
                    )
    return lines + access_log_lines(figures["postgres"].get("access_log_cost", {}))


def access_log_lines(costs: dict[str, Any]) -> list[str]:
    """A line per access-logged read: what recording cost it (`_access_log_cost`)."""
    lines = []
    for name, cost in costs.items():
        lines.append(
            f"\naccess log cost, {name}: {cost['cost']:.1%} of requests/s"
            f" ({cost['requests_per_s_on']:,} on / {cost['requests_per_s_off']:,} off, one server,"
            f" {len(cost['windows_on']) + len(cost['windows_off'])} windows),"
            f" {cost['cpu_cost']:.1%} of CPU"
            f" ({cost['cpu_us_on']} / {cost['cpu_us_off']} us a request; PostgreSQL's"
            f" {cost['postgres_us_on']} / {cost['postgres_us_off']} us); target <= 10%"
            + (
                f"; pairs of windows: mean {cost['pair_cost_mean']:.1%} (95% interval"
                f" {cost['pair_cost_ci95'][0]:.1%} to {cost['pair_cost_ci95'][1]:.1%}),"
                f" of CPU {cost['pair_cpu_cost_mean']:.1%} ({cost['pair_cpu_cost_ci95'][0]:.1%}"
                f" to {cost['pair_cpu_cost_ci95'][1]:.1%})"
                if "pair_cost_mean" in cost
                else ""
            )
        )
    return lines


def _store(
    env: dict[str, str], logs: Path, seeded: Seeded, store: str, seconds: float
) -> dict[str, Any]:
    ids = _id_files(logs / store, seeded)
    results: dict[str, Any] = {}
    for server, workers in SERVERS[store]:
        name = f"{server}_workers_{workers}"
        print(f"-- {store} {name}", flush=True)
        embedded = store == "embedded"
        with served(env, logs, embedded=embedded, server=server, workers=workers) as api:
            _caught_up(api, seeded)
            _warm_up(api, seeded, ids)
            results[name] = {
                f"c{connections}": _connections(api, seeded, ids, connections, seconds)
                for connections in CONNECTIONS
            }
    if store == "postgres":
        results["access_log_cost"] = _access_log_cost(env, logs, seeded, ids, seconds)
    return results


SWITCH_WINDOWS = 8
"""Windows per access-logged read in the HTTP benchmark (`bench.bench_access_log` takes
more, for a narrower interval)."""


def _access_log_cost(
    env: dict[str, str],
    logs: Path,
    seeded: Seeded,
    ids: dict[str, Path],
    seconds: float,
    *,
    windows: int = SWITCH_WINDOWS,
    pinned: bool = False,
) -> dict[str, Any]:
    """What recording reads costs, within one server (uvicorn, one worker, 16
    connections, `CRM_ACCESS_LOG=switch`): each access-logged read in `windows`
    windows with recording on and off in turn (on, off, off, on, ...: a drift of the
    machine weighs on both alike), SIGUSR1 switching between them. Two fresh servers of
    one build differ by more than the log costs (±15 % in CPU per request here), so
    comparing an `on` server with an `off` one cannot settle it. `pinned`: the server on
    a CPU of its own, PostgreSQL and `wrk` on the other (`bench.proc.pin_apart`).
    cost = 1 - requests/s on / requests/s off, over all the windows of each; and per
    pair of neighbouring windows, with their mean's 95 % confidence interval."""
    print("-- postgres uvicorn_workers_1 CRM_ACCESS_LOG=switch" + (" pinned" * pinned), flush=True)
    figures: dict[str, Any] = {}
    with (
        served(env | {"CRM_ACCESS_LOG": "switch"}, logs, embedded=False, server="uvicorn") as api,
        _pinned_apart(api, pinned),
    ):
        _caught_up(api, seeded)
        _warm_up(api, seeded, ids, ACCESS_LOGGED)
        recording = True
        for name, endpoint in ACCESS_LOGGED.items():
            runs: list[tuple[bool, dict[str, Any]]] = []
            for window in range(windows):
                wanted = window % 4 in (0, 3)  # on, off, off, on, on, off, ...
                if wanted != recording:
                    _switch_recording(api)
                    recording = wanted
                run = _measured(api, seeded.token, ids, endpoint, connections=16, seconds=seconds)
                runs.append((recording, run))
            split = {"on": [r for on, r in runs if on], "off": [r for on, r in runs if not on]}
            figures[name] = _switched(split) | _paired(runs)
    return figures


@contextmanager
def _pinned_apart(api: Served, pinned: bool) -> Iterator[None]:
    restore = pin_apart(api.pid, api.database_url) if pinned else None
    try:
        yield
    finally:
        if restore is not None:
            restore()


def _paired(runs: list[tuple[bool, dict[str, Any]]]) -> dict[str, Any]:
    """The cost in each pair of neighbouring windows (one on, one off: the machine's
    drift between pairs, which on a shared VM is larger than the cost, cancels), in
    requests/s and in the server's CPU per request, with each mean's 95 % confidence
    interval (Student's t)."""
    pairs = [
        (first, second) if first_on else (second, first)
        for (first_on, first), (_, second) in zip(runs[0::2], runs[1::2], strict=False)
    ]
    rate = [1 - on["requests_per_s"] / off["requests_per_s"] for on, off in pairs]
    cpu = [
        1 - off["server_cpu_us_per_request"] / on["server_cpu_us_per_request"] for on, off in pairs
    ]
    return _mean_interval("pair_cost", rate) | _mean_interval("pair_cpu_cost", cpu)


def _mean_interval(name: str, values: list[float]) -> dict[str, Any]:
    figures: dict[str, Any] = {f"{name}s": [round(v, 3) for v in values]}
    if len(values) >= 2:
        mean = statistics.fmean(values)
        t = T_95[min(len(values) - 1, len(T_95)) - 1]
        half = t * statistics.stdev(values) / math.sqrt(len(values))
        figures[f"{name}_mean"] = round(mean, 3)
        figures[f"{name}_ci95"] = [round(mean - half, 3), round(mean + half, 3)]
    return figures


T_95 = (
    12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13,
    2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04,
)  # fmt: skip
"""Student's t, two-sided 95 %, for 1 to 30 degrees of freedom (30's serves beyond)."""


def _switch_recording(api: Served) -> None:
    """SIGUSR1, then wait for the server's log line saying it switched."""
    marker = b"access log recording switched"
    before = api.log.read_bytes().count(marker)
    os.kill(api.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while api.log.read_bytes().count(marker) == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not switch its access log: {api.log}")
        time.sleep(0.05)


def _switched(windows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def rate(runs: list[dict[str, Any]]) -> float:
        return float(sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs))

    def cpu(runs: list[dict[str, Any]], figure: str = "server_cpu_us_per_request") -> float:
        weighted = sum(r.get(figure, 0.0) * r["requests"] for r in runs)
        return float(weighted / sum(r["requests"] for r in runs))

    on, off = windows["on"], windows["off"]
    return {
        "requests_per_s_on": round(rate(on)),
        "requests_per_s_off": round(rate(off)),
        "cost": round(1 - rate(on) / rate(off), 3),
        "windows_on": [round(r["requests_per_s"]) for r in on],
        "windows_off": [round(r["requests_per_s"]) for r in off],
        # the server's CPU per request: steadier than requests/s on a shared machine
        "cpu_us_on": round(cpu(on), 1),
        "cpu_us_off": round(cpu(off), 1),
        "cpu_cost": round(1 - cpu(off) / cpu(on), 3),
        # PostgreSQL's CPU per request (storing the records): 0 when it runs elsewhere
        "postgres_us_on": round(cpu(on, "postgres_cpu_us_per_request"), 1),
        "postgres_us_off": round(cpu(off, "postgres_cpu_us_per_request"), 1),
        "p99_ms_on": max(r["p99_ms"] for r in on),
        "p99_ms_off": max(r["p99_ms"] for r in off),
    }


def _ratio(run: dict[str, Any], name: str) -> float:
    """An endpoint's requests/s over its run's ceiling, unrounded."""
    ceilings = [float(run[c]["requests_per_s"]) for c in ("ceiling_before", "ceiling_after")]
    return float(run[name]["requests_per_s"]) / (sum(ceilings) / 2)


def _connections(
    api: Served,
    seeded: Seeded,
    ids: dict[str, Path],
    connections: int,
    seconds: float,
    *,
    endpoints: dict[str, Endpoint] = ENDPOINTS,
) -> dict[str, Any]:
    """The ceiling, every endpoint, the ceiling again; ratios against the ceilings' mean.

    A command's window follows its own warm-up: the commands' cache trusts an aggregate
    as is for `IDLE_SECONDS` after its last command and first catches up one idle for
    longer (`services.aggregate_cache`), which the windows in between exceed, and a
    window measures commands on aggregates in use, as a busy API's are. (A command on
    an idle one first catches it up: RESULTS.md.)"""

    def measure(endpoint: Endpoint) -> dict[str, Any]:
        if endpoint.method != "GET":
            _warm_up(api, seeded, ids, {"": endpoint})
        return _measured(api, seeded.token, ids, endpoint, connections=connections, seconds=seconds)

    measure(CEILING)  # warm-up: connections, caches, the JIT-less interpreter's first paths
    before = measure(CEILING)
    measured = {name: measure(endpoint) for name, endpoint in endpoints.items()}
    after = measure(CEILING)
    run = {"ceiling_before": before, "ceiling_after": after, **measured}
    for name, figures in measured.items():
        figures["ratio"] = round(_ratio(run, name), 2)
    return run


def _measured(
    api: Served,
    token: str,
    ids: dict[str, Path],
    endpoint: Endpoint,
    *,
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    """One `wrk` run of `endpoint`, with the server's CPU per request and, on
    PostgreSQL, its database backends' (0 when PostgreSQL runs on another machine)."""
    database = api.database_cpu_seconds() if api.database_url else None
    cpu = api.cpu_seconds()
    figures = wrk.run(
        api.base_url, connections=connections, seconds=seconds, token=token,
        method=endpoint.method, path=endpoint.path, body=endpoint.body,
        ids_file=ids.get(endpoint.ids),
    )  # fmt: skip
    used, requests = api.cpu_seconds() - cpu, figures["requests"]
    figures |= {"server_cpu_us_per_request": _per_request(used, requests)}
    if database is not None:
        used = api.database_cpu_seconds() - database
        figures |= {"postgres_cpu_us_per_request": _per_request(used, requests)}
    return figures


def _warm_up(
    api: Served, seeded: Seeded, ids: dict[str, Path], endpoints: dict[str, Endpoint] = ENDPOINTS
) -> None:
    """Every endpoint's ids in turn, so each is in the server's caches as in a
    long-running API (a cold start loads every customer once: not what is measured)."""
    for endpoint in endpoints.values():
        count = len(getattr(seeded, endpoint.ids)) if endpoint.ids else 0
        wrk.run(
            api.base_url, connections=16, seconds=1 + math.ceil(count / WARM_UP_RATE),
            token=seeded.token, method=endpoint.method, path=endpoint.path,
            body=endpoint.body, ids_file=ids.get(endpoint.ids), sequential=True,
        )  # fmt: skip


def _per_request(cpu_seconds: float, requests: int) -> float:
    return round(cpu_seconds / max(requests, 1) * 1e6, 1)


def _id_files(directory: Path, seeded: Seeded) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("customers", "readers", "conversations"):
        files[name] = directory / f"{name}.txt"
        files[name].write_text("".join(f"{i}\n" for i in getattr(seeded, name)))
    return files


def _caught_up(api: Served, seeded: Seeded) -> None:
    """Wait until the server's read models hold the seeded data (`crm run` applies it
    as it starts): a department page at the seeded head answers 200. On PostgreSQL, then
    analyze the database, as autovacuum would have in a long-running deployment (and
    would otherwise do in the middle of a measurement, changing its plans)."""
    import httpx

    url = f"{api.base_url}/v1/departments/sales/customers?min_position={seeded.head}"
    headers = {"Authorization": f"Bearer {seeded.token}"}
    deadline = time.monotonic() + 300
    while httpx.get(url, headers=headers, timeout=30).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the read models did not reach position {seeded.head}")
        time.sleep(0.5)
    if api.database_url:
        with psycopg.connect(api.database_url, autocommit=True) as conn:
            conn.execute("ANALYZE")


if __name__ == "__main__":
    import json

    print(json.dumps(run(os.environ["CRM_DATABASE_URL"], "", "--quick" in sys.argv), indent=2))
