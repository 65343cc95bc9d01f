"""`python -m bench [NAME ...] [--quick]`: run the benchmarks, write results files.

Each benchmark module exposes `run(database_url, kafka_bootstrap, quick) -> dict`
whose figures include its same-run baseline and the ratio. Results go to
bench/results/latest.json and latest.md, with a description of the machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "relay": "bench.bench_relay",
    "projections": "bench.bench_projections",
    "commands": "bench.bench_commands",
    "audit": "bench.bench_audit",
    "http": "bench.bench_http",
    "access_log": "bench.bench_access_log",
    "search": "bench.bench_search",
    "cold_reads": "bench.bench_cold_reads",
    "long_reads": "bench.bench_long_reads",
}
RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "sched_autogroup": _autogroup(),
        "postgres": _version(["psql", "--version"]),
        "java": _version(["java", "-version"]),
    }


def _autogroup() -> str:
    """Whether the kernel schedules each session as one group: with PostgreSQL in a
    session of its own and every core busy, its backends can wait whole stretches (the
    two-worker tail in bench/RESULTS.md, eleventh session)."""
    setting = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if not setting.exists():
        return "not in this kernel"
    return "on" if setting.read_text().strip() == "1" else "off"


def _version(command: list[str]) -> str:
    try:
        # fixed argv of well-known tools, no shell, no user input
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)  # noqa: S603
    except OSError:
        return "not found"
    return (done.stdout or done.stderr).strip().splitlines()[0]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    args = parser.parse_args()
    run_benchmarks(
        args.names,
        quick=args.quick,
        database_url=os.environ["CRM_DATABASE_URL"],
        bootstrap=os.environ["CRM_KAFKA_BOOTSTRAP"],
    )
    return 0


def run_benchmarks(names: list[str], *, quick: bool, database_url: str, bootstrap: str) -> None:
    """Run the named benchmarks (all when empty) and write the results files."""
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; known: {list(BENCHMARKS)}")
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": quick,
        "results": {},
    }
    for name in names or list(BENCHMARKS):
        started = time.monotonic()
        module = importlib.import_module(BENCHMARKS[name])
        print(f"== {name}", flush=True)
        figures = module.run(database_url, bootstrap, quick)
        figures["wall_seconds"] = round(time.monotonic() - started, 1)
        report["results"][name] = figures
        print(json.dumps(figures, indent=2), flush=True)
    write(report)


def write(report: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Benchmark results",
        "",
        f"Run {report['started_at']}" + (" (quick)" if report["quick"] else ""),
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in report["machine"].items()]
    for name, figures in report["results"].items():
        lines += ["", f"## {name}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in flattened(figures)]
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'latest.json'} and {RESULTS / 'latest.md'}")


def flattened(figures: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested figures as (dotted key, value) rows: `sales.single_process.events_per_s`."""
    rows: list[tuple[str, Any]] = []
    for key, value in figures.items():
        if isinstance(value, dict):
            rows += flattened(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
