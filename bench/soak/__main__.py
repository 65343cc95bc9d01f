"""`python -m bench.soak [--quick]` (run by `make soak` / `scripts/soak.sh`): the whole
pipeline under HTTP load and faults, with no supervisor, then proof that nothing is lost.

It runs `crm api`, `crm relay` and the five `crm consume` processes against its OWN
PostgreSQL and Kafka (`CRM_DATABASE_URL`, `CRM_KAFKA_BOOTSTRAP` and `CRM_SERVICES_DIR`
as `scripts/soak.sh` sets them), since it restarts both. Under a load of commands that
carry Idempotency-Keys and are retried until answered, it SIGKILLs the relay three
times, each consumer once and one writer process, and restarts the broker and
PostgreSQL (`bench.soak.faults`; in the full soak each stays down a minute), timing the
recovery from each. Then it checks: every acknowledged command is stored; every stored
event is on Kafka (duplicates counted); every projection has caught up, rejected no
record, and `crm projections verify` finds no difference; every process is still
running (restarted only by the soak, after its own SIGKILL); the API never answered 500.
Exit 0 when all hold, else 1. The report goes to stdout and to `<logs>/report.md`,
beside every process's log.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.databases import fresh_database
from bench.soak import checks, report
from bench.soak.faults import Pace, run_all, schedule
from bench.soak.fleet import Fleet
from bench.soak.load import CommandLoad
from bench.soak.services import ServiceScripts
from projections import PROJECTIONS

PACES = {
    "quick": Pace(broker_down_s=2, postgres_down_s=2, between_s=1),
    "full": Pace(broker_down_s=60, postgres_down_s=60, between_s=35),  # each gone a minute
}
CATCH_UP_LIMIT_S = 600.0
LOGS = Path(__file__).resolve().parents[2] / "var" / "soak" / "logs"
API_PORT = 28080


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="~3 minutes instead of ~11")
    args = parser.parse_args()
    pace = PACES["quick" if args.quick else "full"]
    # SIGTERM (a CI timeout, a stopped job) unwinds like Ctrl-C, through `fleet.stop()`:
    # by default it ended this process at once and left its API, relay and consumers up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    logs = LOGS / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.monotonic()
    with fresh_database(os.environ["CRM_DATABASE_URL"], prefix="crm_soak") as url:
        fleet = Fleet(_environment(url, logs), logs)
        try:
            figures = _soak(fleet, url, pace)
        finally:
            fleet.stop()
    figures.minutes = round((time.monotonic() - started) / 60, 1)
    text = report.markdown(figures, quick=args.quick)
    (logs / "report.md").write_text(text)
    print(text)
    return 0 if figures.passed else 1


def _environment(url: str, logs: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CRM_DATABASE_URL": url,
        "CRM_TOPIC_PREFIX": f"soak{uuid.uuid4().hex[:8]}.",
        "CRM_DATA_DIR": str(logs / "data"),
        "CRM_LOG_FORMAT": "json",
    }


def _soak(fleet: Fleet, url: str, pace: Pace) -> report.Figures:
    fleet.run("topics", "ensure")
    token = fleet.run("principals", "add", "soak", "--department", "sales", "--role", "admin")
    fleet.start("api", "api", "--port", str(API_PORT))
    fleet.start("relay", "relay")
    for name in PROJECTIONS:
        fleet.start(f"consume {name}", "consume", name)
    base = f"http://127.0.0.1:{API_PORT}"
    _wait(lambda: _answers(f"{base}/healthz"), "the API", 120)
    with CommandLoad(base, token.strip().splitlines()[-1], callers=4) as load:
        _wait(lambda: load.acked >= 50, "the first commands", 120)
        recoveries = run_all(schedule(fleet, ServiceScripts(), pace), url, load, pace)
    caught_up = _wait(lambda: _caught_up(url), "the pipeline to catch up", CATCH_UP_LIMIT_S)
    prefix = fleet.env["CRM_TOPIC_PREFIX"]
    return report.Figures(
        recoveries=recoveries,
        tally=load.tally,
        missing=checks.missing_acks(url, load.tally.acks),
        published=checks.published(url, os.environ["CRM_KAFKA_BOOTSTRAP"], prefix),
        caught_up=caught_up,
        verified={name: _verified(fleet, name) for name in PROJECTIONS},
        rejected={name: checks.rejected(url, name) for name in PROJECTIONS},
        exits=fleet.unexpected_exits(),
        restarts={m.role: (m.kills, m.starts) for m in fleet.members.values()},
        writer_restarts=checks.health(url, "consume shared")[2],
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _caught_up(url: str) -> bool:
    return checks.relay_reached(url) and all(
        checks.projection_reached(url, name) for name in PROJECTIONS
    )


def _verified(fleet: Fleet, name: str) -> bool:
    try:
        return "0 rows differ" in fleet.run("projections", "verify", name)
    except RuntimeError as error:
        print(error)
        return False


def _wait(condition: Callable[[], bool], what: str, limit: float) -> bool:
    """Poll `condition` until true; False (reported, not raised) after `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    print(f"gave up waiting for {what} after {limit:.0f} s", flush=True)
    return False


if __name__ == "__main__":
    raise SystemExit(main())
