"""`wrk`, the native HTTP load generator: run it and read its report.

A Python load generator measures itself: 16 `httpx` threads spend more CPU per request
than the server does, and on a 2-core machine they take it from the server. `wrk` (C,
epoll, the Debian package `wrk`, installed by `scripts/bench.sh`) costs a few percent of
a core at these rates. Requests come from `bench/lua/request.lua`, which fills an
endpoint's path and body from a list of ids and a per-request counter.

`parse` reads wrk's own text report (with `--latency`): requests/s, the latency
percentiles it prints (50/75/90/99), how many answers were not 2xx/3xx and how many
socket errors occurred. A run with any of those is flagged, never silently averaged in.
I/O: runs the `wrk` executable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("lua") / "request.lua"
THREADS = 2  # the machine's cores; more threads only add switching
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something that is not its report."""


def duration_seconds(text: str) -> float:
    """`850.00us`, `2.00ms`, `1.20s`, `1.00m` -> seconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise WrkError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _SECONDS[match[2]]


def parse(report: str) -> dict[str, Any]:
    """The figures of one wrk report (see the module docstring)."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", report, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", report, re.MULTILINE)
    if rate is None or total is None:
        raise WrkError(f"no wrk report in: {report[-500:]!r}")
    percentiles = {
        int(share): duration_seconds(value)
        for share, value in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)\s*$", report, re.MULTILINE)
    }
    if 50 not in percentiles or 99 not in percentiles:
        raise WrkError("no latency distribution: run wrk with --latency")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", report)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    socket_errors = sum(int(n) for n in sockets.groups()) if sockets else 0
    return {
        "requests_per_s": round(float(rate[1]), 1),
        "p50_ms": round(percentiles[50] * 1000, 2),
        "p90_ms": round(percentiles.get(90, percentiles[99]) * 1000, 2),
        "p99_ms": round(percentiles[99] * 1000, 2),
        "requests": int(total[1]),
        "seconds": round(duration_seconds(total[2]), 2),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": socket_errors,
    }


def run(
    base_url: str,
    *,
    connections: int,
    seconds: float,
    token: str,
    method: str = "GET",
    path: str,
    body: str = "",
    ids_file: Path | None = None,
    sequential: bool = False,
) -> dict[str, Any]:
    """Drive `method base_url+path` for `seconds` with `connections` open connections.

    `path` and `body` may hold `{id}` (an id from `ids_file`, a random one per request,
    or each in turn when `sequential`) and `{n}` (a number unique to the request, for
    bodies that must differ)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk is not installed: scripts/bench.sh installs it (apt-get install wrk)")
    threads = min(THREADS, connections)
    order = f"sequential:{threads}" if sequential else "random"
    command = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--latency", "--timeout", "10s", "-H", f"Authorization: Bearer {token}",
        "-s", str(SCRIPT), base_url,
        "--", method, path, body, str(ids_file or ""), order,
    ]  # fmt: skip
    # our own fixed argv (wrk from PATH, the bench's arguments), no shell
    done = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip()[-500:]}")
    figures = parse(done.stdout)
    return figures | {"connections": connections}
