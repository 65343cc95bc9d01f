"""`crm audit verify` throughput on PostgreSQL against reading and hashing the same rows.

Stores N events in a fresh database (batch saves: each insert chains its batch, not
timed) and signs checkpoints over them, then times:

* `baseline`: the floor of any verification: read every row of the events table in
  pages (binary, the relay's page size) and SHA-256 each event's stored state once;
* `verify`: `services.audit_verify.verify_log` as `crm audit verify` runs it (without
  the progress bar): canonical bytes built by the server, the chain and the Merkle tree
  recomputed, links and checkpoints (signatures, chain and tree heads) compared.

Each is timed three times and the best kept.

Target: verify >= 100,000 events/s. `python -m bench audit` or
`python -m bench.bench_audit [--quick]` (needs CRM_DATABASE_URL).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from bench.bench_relay import store_events
from bench.databases import fresh_database
from services.audit_keys import load_or_create
from services.audit_log import AuditLog, open_audit_log
from services.audit_verify import PAGE, Report, verify_log
from services.checkpointer import Checkpointer
from services.event_store import open_event_store

TARGET = 100_000
RUNS = 3
"""Each figure is the best of three runs (the machine's speed drifts; the log does not)."""


def time_baseline(pg_url: str) -> tuple[float, int]:
    """Seconds to read every event row page by page and hash its state; rows read."""
    query = (
        "SELECT notification_id, originator_id, originator_version, topic, state FROM crm_events"
        " WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
    )
    rows, after = 0, 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cursor = conn.cursor(binary=True, row_factory=tuple_row)
        started = time.perf_counter()
        while page := cursor.execute(query, (after, PAGE), prepare=True).fetchall():
            for row in page:
                hashlib.sha256(row[4]).digest()
            rows += len(page)
            after = page[-1][0]
        return time.perf_counter() - started, rows


def time_verify(log: AuditLog, public_key: bytes) -> tuple[float, Report]:
    started = time.perf_counter()
    report = verify_log(log, log.checkpoints(), public_key)
    return time.perf_counter() - started, report


def _seconds(timed: tuple[float, object]) -> float:
    return timed[0]


def run(database_url: str, kafka_bootstrap: str, quick: bool = False) -> dict[str, Any]:
    events = 20_000 if quick else 500_000
    with fresh_database(database_url) as pg_url, tempfile.TemporaryDirectory() as keys:
        app = open_event_store(pg_url, None)
        try:
            stored = store_events(app, events)
            log = open_audit_log(app)
            key = load_or_create(Path(keys) / "audit.key")
            signer = Checkpointer(log, key, every_events=1, every_seconds=1)
            signer.checkpoint()
            baseline_s, rows = min((time_baseline(pg_url) for _ in range(RUNS)), key=_seconds)
            verify_s, report = min(
                (time_verify(log, key.public_key) for _ in range(RUNS)), key=_seconds
            )
            signer.close()
        finally:
            app.close()
    assert report.broken is None, report
    assert report.events == stored == rows, report
    verify_rate, baseline_rate = stored / verify_s, stored / baseline_s
    return {
        "events": stored,
        "checkpoints": report.checkpoints,
        "verify_events_per_s": round(verify_rate),
        "baseline_read_and_hash_events_per_s": round(baseline_rate),
        "ratio": round(verify_rate / baseline_rate, 3),
        "target_events_per_s": TARGET,
    }


if __name__ == "__main__":
    print(run(os.environ["CRM_DATABASE_URL"], "", quick="--quick" in sys.argv))
