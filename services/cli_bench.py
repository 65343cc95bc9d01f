"""`crm bench`: the benchmarks of `make bench`, against the configured PostgreSQL and Kafka.

`make bench` also starts the services; this subcommand expects them running
(`make services-up`, then `source var/services/env`).
"""

from __future__ import annotations

import argparse
from typing import Any

from services.settings import ConfigError, Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    bench = commands.add_parser(
        "bench", help="run the benchmarks (needs CRM_DATABASE_URL and CRM_KAFKA_BOOTSTRAP)"
    )
    bench.add_argument(
        "names",
        nargs="*",
        help="relay, projections, commands, audit, http, access_log, search, cold_reads, long_reads"
        " (default: all)",
    )
    bench.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url is None:
        raise ConfigError("CRM_DATABASE_URL", "benchmarks run against PostgreSQL + Kafka")
    try:
        from bench.__main__ import run_benchmarks
    except ImportError:
        print("crm bench: run it from a checkout of the project (bench/ is not installed)")
        return 2
    run_benchmarks(
        args.names,
        quick=args.quick,
        database_url=settings.database_url,
        bootstrap=settings.kafka_bootstrap,
    )
    return 0
