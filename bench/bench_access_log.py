"""The access log's cost on read throughput, narrowed: issue 18's "≤ 10 %".

The HTTP benchmark (`bench.bench_http`) measures it with 8 switched windows per read,
beside everything else; on a shared 2-vCPU VM, single windows of one server then differ
by more than the log costs. This runs only that measurement, with more windows
(`WINDOWS`), and reports for each access-logged read (`GET` customer, a department
page) the cost in each pair of neighbouring windows (one with recording on, one off),
their mean and its 95 % confidence interval, in requests/s and in the server's CPU per
request. Twice: `shared`, everything on every CPU as in the HTTP benchmark; `pinned`,
the server on a CPU of its own and PostgreSQL and `wrk` on the other, as if PostgreSQL
ran on its own machine (`bench.proc.pin_apart`): on a 2-vCPU VM, PostgreSQL storing
the records otherwise slows the server as much as the server's own recording does.

`python -m bench access_log [--quick]` (harness; needs CRM_DATABASE_URL) or
`make bench ARGS="access_log"`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_http import (
    FULL,
    QUICK,
    SWITCH_WINDOWS,
    _access_log_cost,
    _id_files,
    access_log_lines,
    seeded_store,
)
from bench.databases import fresh_database

WINDOWS = 24
"""Windows per read (12 pairs) in the full run; the quick run takes the HTTP benchmark's."""
SECONDS = 4


def run(database_url: str, kafka_bootstrap: str = "", quick: bool = False) -> dict[str, Any]:
    """PostgreSQL, uvicorn, one worker, 16 connections (Kafka is not involved)."""
    sizes = QUICK if quick else FULL
    windows, seconds = (SWITCH_WINDOWS, sizes.seconds) if quick else (WINDOWS, SECONDS)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(database_url) as url:
        logs = Path(tmp)
        env = {"CRM_DATA_DIR": str(logs / "data"), "CRM_DATABASE_URL": url}
        seeded = seeded_store(env, sizes)
        ids = _id_files(logs / "ids", seeded)
        costs = {
            arrangement: _access_log_cost(
                env, logs, seeded, ids, seconds, windows=windows, pinned=arrangement == "pinned"
            )
            for arrangement in ("shared", "pinned")
        }
    for arrangement, cost in costs.items():
        print(f"\n{arrangement}:" + "".join(access_log_lines(cost)), flush=True)
    return {"seconds_per_window": seconds, "windows_per_read": windows, **costs}


if __name__ == "__main__":
    import json

    print(json.dumps(run(os.environ["CRM_DATABASE_URL"], "", "--quick" in sys.argv), indent=2))
