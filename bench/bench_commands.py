"""Commands/s and latency through the service layer on PostgreSQL (durable, fsync on),
16 concurrent callers, all in one run on one fresh database. A caller is a coroutine
on one event loop, as an HTTP request is in the API; worker threads (one per caller)
serve loads from the store and the baseline's transactions.

* `baseline`: one transaction per command, every command loads its aggregate from the
  store (the service layer before group commit and the aggregate cache);
* `direct_cached`, `group_commit_uncached`: one optimisation each, for attribution;
* `group_commit`: group commit + aggregate cache (what the HTTP API uses): the target;
* `group_commit_callers_1/4/64` (full run): the same with other numbers of callers. A
  batch holds at most half of the callers (the other half decides meanwhile), and a
  transaction costs nearly as much for 1 event as for 16, so throughput follows the
  caller count;
HTTP figures are `bench.bench_http`'s (wrk, a native load generator).

Each service-layer figure also says where the time went: CPU seconds of this Python
process and of the PostgreSQL backends serving it, per second of wall time (a Python
process cannot use more than ~1.0 of a core for Python code: the GIL), per-command
CPU in microseconds, and the mean batch size and flush time.

`python -m bench commands` (harness) or `python -m bench.bench_commands [--quick]`
(needs CRM_DATABASE_URL). Each run uses its own fresh database, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bench import latency
from bench.databases import fresh_database
from bench.proc import database_cpu
from services.access.rules import Principal, Role
from services.aggregate_cache import AggregateCache
from services.bootstrap import Runtime, bootstrap
from services.commands import Caller, CommandService, Committer
from services.customer_commands import RegisterCustomer, UpdateProfile
from services.group_commit import DirectCommitter, GroupCommitter
from services.logs import configure_logging
from services.settings import load_settings

CALLER = Caller(
    principal=Principal(name="bench", department="sales", role=Role.SERVICE), correlation_id="b"
)
T = TypeVar("T")


def _customers(service: CommandService, count: int) -> list[uuid.UUID]:
    async def register(i: int) -> uuid.UUID:
        return (await service.create(CALLER, RegisterCustomer(name=f"c{i}"))).id

    return asyncio.run(_gather([register(i) for i in range(count)]))


async def _gather(calls: list[Awaitable[T]]) -> list[T]:
    return list(await asyncio.gather(*calls))


class CpuMeter:
    """CPU seconds of this process and of the PostgreSQL backends of one database
    (from /proc: the bench runs beside its PostgreSQL)."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url

    def sample(self) -> tuple[float, float]:
        return time.process_time(), database_cpu(self._url)


def _run(work: Awaitable[object], threads: int) -> None:
    """Run `work` on a new event loop whose worker threads (loads from the store, and
    the baseline's transactions) number `threads`: one per caller, as a thread each."""

    async def main() -> None:
        with ThreadPoolExecutor(threads) as pool:
            asyncio.get_running_loop().set_default_executor(pool)
            await work

    asyncio.run(main())


def _load(
    callers: int,
    seconds: float,
    command: Callable[[int, int], Awaitable[object]],
    *,
    warm_up: Callable[[], Awaitable[object]] | None = None,
    close: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, float]:
    """`callers` concurrent coroutines issue commands for `seconds`; throughput, latency.

    `warm_up` runs before and `close` after the timed part, on the same event loop (a
    committer belongs to one loop)."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    elapsed = 0.0

    async def worker(caller: int, stop: float) -> None:
        n = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await command(caller, n)
            latencies[caller].append(time.perf_counter() - started)
            n += 1

    async def run_all() -> None:
        nonlocal elapsed
        if warm_up is not None:
            await warm_up()
        began = time.perf_counter()
        stop = began + seconds
        await asyncio.gather(*(worker(caller, stop) for caller in range(callers)))
        elapsed = time.perf_counter() - began
        if close is not None:
            await close()

    _run(run_all(), callers)
    return latency.figures([x for xs in latencies for x in xs], elapsed)


class BatchStats:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.seconds: list[float] = []

    def __call__(self, size: int, seconds: float) -> None:
        self.sizes.append(size)
        self.seconds.append(seconds)

    def summary(self, elapsed: float) -> dict[str, float]:
        """Batch size, flush time, and the share of wall time the writer was flushing
        (the rest it waited for callers to load and decide)."""
        if not self.sizes:
            return {}
        return {
            "mean_batch": round(statistics.mean(self.sizes), 1),
            "mean_flush_ms": round(statistics.mean(self.seconds) * 1000, 2),
            "writer_flushing_share": round(sum(self.seconds) / elapsed, 2),
        }


def _service_layer(
    runtime: Runtime,
    meter: CpuMeter,
    ids: list[uuid.UUID],
    *,
    group: bool,
    cached: bool,
    callers: int,
    seconds: float,
) -> dict[str, float]:
    stats = BatchStats()
    committer: Committer = (
        GroupCommitter(
            runtime.app,
            window_ms=runtime.settings.group_commit_window_ms,
            max_batch=runtime.settings.group_commit_max_batch,
            on_batch=stats,
        )
        if group
        else DirectCommitter(runtime.app)  # a transaction per caller at once: see `_run`
    )
    cache = AggregateCache(max_size=len(ids) if cached else 0)
    service = CommandService(runtime.app, committer, runtime.keyring, cache)
    share = len(ids) // callers

    async def command(caller: int, n: int) -> None:
        customer_id = ids[caller * share + n % share]  # callers never collide
        await service.change(CALLER, customer_id, UpdateProfile(company=f"co {n}"))

    before: list[tuple[float, float]] = []

    async def warm_up() -> None:
        if cached:  # one command per customer fills the cache: a long-running API's steady state
            await _gather([command(i // share, -1 - i % share) for i in range(share * callers)])
        stats.sizes.clear()
        stats.seconds.clear()
        before.append(meter.sample())

    figures = _load(callers, seconds, command, warm_up=warm_up, close=committer.aclose)
    python_after, postgres_after = meter.sample()
    python_before, postgres_before = before[0]
    python_cpu, postgres_cpu = python_after - python_before, postgres_after - postgres_before
    figures |= {
        "python_cpu_per_wall_s": round(python_cpu / figures["seconds"], 2),
        "postgres_cpu_per_wall_s": round(postgres_cpu / figures["seconds"], 2),
        "python_cpu_us_per_command": round(python_cpu / figures["count"] * 1e6, 1),
        "postgres_cpu_us_per_command": round(postgres_cpu / figures["count"] * 1e6, 1),
    }
    return figures | stats.summary(figures["seconds"])


def run(database_url: str, kafka_bootstrap: str = "", quick: bool = False) -> dict[str, Any]:
    """The figures (Kafka is not involved: `kafka_bootstrap` is unused)."""
    seconds, customers, callers = (2.0, 1600, 16) if quick else (5.0, 3200, 16)
    with fresh_database(database_url) as url, tempfile.TemporaryDirectory() as tmp:
        env = {"CRM_DATABASE_URL": url, "CRM_DATA_DIR": tmp, "CRM_LOG_LEVEL": "warning"}
        settings = load_settings(env)
        configure_logging(settings)  # no per-request log lines in the measurement
        runtime = bootstrap(settings)
        meter = CpuMeter(url)
        try:
            setup = CommandService(runtime.app, DirectCommitter(runtime.app), runtime.keyring)
            ids = _customers(setup, customers)

            def layer(group: bool, cached: bool, n: int = callers) -> dict[str, float]:
                return _service_layer(
                    runtime, meter, ids, group=group, cached=cached, callers=n, seconds=seconds
                )

            figures: dict[str, Any] = {
                "callers": callers,
                "customers": customers,
                "load_average_before": os.getloadavg()[0],  # other work on the machine
            }
            figures["baseline"] = layer(group=False, cached=False)
            figures["direct_cached"] = layer(group=False, cached=True)
            figures["group_commit_uncached"] = layer(group=True, cached=False)
            figures["group_commit"] = layer(group=True, cached=True)
            if not quick:
                for n in (1, 4, 64):
                    figures[f"group_commit_callers_{n}"] = layer(group=True, cached=True, n=n)
            figures["ratio_vs_baseline"] = round(
                figures["group_commit"]["per_second"] / figures["baseline"]["per_second"], 1
            )
            figures["load_average_after"] = os.getloadavg()[0]
            return figures
        finally:
            runtime.close()


if __name__ == "__main__":
    import json

    print(json.dumps(run(os.environ["CRM_DATABASE_URL"], "", "--quick" in sys.argv), indent=2))
