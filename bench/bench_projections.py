"""Projection replay from Kafka into PostgreSQL read models: events/s and consumer memory.

Publishes N sealed CloudEvents of a seeded random workload to fresh topics (not
timed), then for each projection runs `crm consume NAME --until-caught-up` as a
subprocess against a fresh database and times it, sampling the process's VmRSS and
VmHWM from /proc. Baseline in the same run: reading and decoding the same records
from Kafka without projecting (the ceiling the runner could reach).
Targets: >= 20,000 events/s per projection; <= 200 MB RSS, flat.

`python -m bench.bench_projections [--events N] [--only NAME ...]`
(needs CRM_DATABASE_URL and CRM_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from bench.bench_relay import fresh_database
from consumers import kafka_io
from consumers.envelope import all_topics, from_cloudevent, to_cloudevent, topic_name
from consumers.key_stores import PostgresKeyStore
from consumers.keyring import Keyring
from domain import codec
from domain.customer import CustomerErased
from projections import PROJECTIONS
from tests.workload import Workload

PARTITIONS = 3


class BenchKeyStore:
    """Keys in memory while publishing (a DB round trip per new customer would dominate
    the set-up), copied to PostgreSQL in bulk afterwards for the consumers."""

    def __init__(self) -> None:
        self.keys: dict[uuid.UUID, bytes | None] = {}

    def load(self, subject: uuid.UUID) -> bytes | None:
        return self.keys.get(subject)

    def create(self, subject: uuid.UUID, key: bytes) -> bytes | None:
        return self.keys.setdefault(subject, key)

    def destroy(self, subject: uuid.UUID) -> None:
        self.keys[subject] = None

    def copy_to(self, pool: ConnectionPool) -> None:
        PostgresKeyStore(pool)  # creates the table
        statement = "COPY crm_subject_keys (subject, key) FROM STDIN"
        with pool.connection() as conn, conn.cursor() as cursor, cursor.copy(statement) as copy:
            for subject, key in self.keys.items():
                copy.write_row((subject, key))


def publish(bootstrap: str, prefix: str, events: int, keyring: Keyring) -> None:
    """Stream the workload to Kafka (never all in memory), erasing keys like the service."""
    kafka_io.ensure_topics(bootstrap, all_topics(prefix), partitions=PARTITIONS)
    with kafka_io.Producer(bootstrap) as producer:
        for position, event in enumerate(Workload(seed=42).events(events), start=1):
            sealed = to_cloudevent(codec.seal(event, keyring), position)
            topic = topic_name(event.aggregate_type, prefix)
            producer.send(topic, str(event.originator_id).encode(), sealed)
            if isinstance(event, CustomerErased):
                keyring.erase(event.originator_id)
        producer.flush()


def baseline(bootstrap: str, prefix: str) -> float:
    """Records/s of reading and decoding the topics without projecting."""
    started, count = time.perf_counter(), 0
    for record in kafka_io.read_all(bootstrap, all_topics(prefix)):
        from_cloudevent(record.value)
        count += 1
    return count / (time.perf_counter() - started)


def consume(name: str, env: dict[str, str], events: int) -> dict[str, Any]:
    """Run one consumer to the end of the topics; its rate and memory samples (MB)."""
    command = [sys.executable, "-m", "services.cli", "consume", name, "--until-caught-up"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)  # noqa: S603 - fixed argv
    samples: list[float] = []
    peak = 0.0
    while process.poll() is None:
        rss, hwm = _memory(process.pid)
        samples.append(rss)
        peak = max(peak, hwm)
        time.sleep(0.25)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"crm consume {name} exited with {process.returncode}")
    quarter = [samples[int(len(samples) * q / 4)] for q in (1, 2, 3)] if samples else []
    return {
        "events_per_s": round(events / seconds),
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_at_25_50_75_pct_mb": [round(s, 1) for s in quarter],
    }


def _memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB; zeros once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0, 0.0
    values = {k: v for k, _, v in (line.partition(":") for line in lines)}
    mb = [int(values.get(k, "0 kB").split()[0]) / 1024 for k in ("VmRSS", "VmHWM")]
    return mb[0], mb[1]


def run(
    database_url: str,
    kafka_bootstrap: str,
    quick: bool = False,
    events: int | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    count = events or (50_000 if quick else 1_000_000)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    figures: dict[str, Any] = {"events": count}
    with fresh_database(database_url) as keys_url, ConnectionPool(keys_url, open=True) as pool:
        started = time.perf_counter()
        keys = BenchKeyStore()
        publish(kafka_bootstrap, prefix, count, Keyring(keys))
        keys.copy_to(pool)
        figures["publish_seconds"] = round(time.perf_counter() - started, 1)
        figures["baseline_read_decode_per_s"] = round(baseline(kafka_bootstrap, prefix))
        for name in only or list(PROJECTIONS):
            env = {
                **os.environ, "CRM_DATABASE_URL": keys_url, "CRM_TOPIC_PREFIX": prefix,
                "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRM_LOG_LEVEL": "warning",
            }  # fmt: skip
            result = consume(name, env, count)
            result["ratio_to_baseline"] = round(
                result["events_per_s"] / figures["baseline_read_decode_per_s"], 3
            )
            figures[name] = result
            print(name, result, flush=True)
    kafka_io.delete_topics(kafka_bootstrap, all_topics(prefix))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--only", nargs="*", choices=sorted(PROJECTIONS))
    args = parser.parse_args()
    figures = run(
        os.environ["CRM_DATABASE_URL"], os.environ["CRM_KAFKA_BOOTSTRAP"],
        events=args.events, only=args.only,
    )  # fmt: skip
    print(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
