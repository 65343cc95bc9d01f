"""Relay throughput (event store -> Kafka) against the raw kafka-python producer.

Stores N events in a fresh PostgreSQL database (batch saves, not timed), then times
(1) the relay draining them to Kafka: read the log in pages, decode, wrap as CloudEvents,
send, confirm, store the position; and (2) the raw kafka-python `KafkaProducer` sending
the very same (topic, key, value, headers) records, prepared in advance, with the same
producer settings and topic layout (fresh topics each). Target: relay >= 80 % of raw.
The raw producer is timed twice: with kafka-python's stock partitioner (the target's
baseline) and with the relay's key-hash-caching partitioner (the relay's own overhead).
Then (3) latency under light load: one committed event every 20 ms, the time from the
commit returning to the broker acknowledging it (the relay woken by LISTEN/NOTIFY).

`python -m bench.bench_relay [--quick]` (needs CRM_DATABASE_URL, CRM_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from bench.databases import fresh_database
from consumers import kafka_io, kafka_settings
from consumers.envelope import HEADERS, all_topics
from consumers.relay import Relay, encode_notification
from consumers.relay_position import PostgresRelayPosition
from consumers.relay_wakeup import wakeup_for
from domain.base import Context
from domain.customer import Customer
from services.event_store import CrmApplication, open_event_store

PARTITIONS = 3
PAGE_SIZE = 5000


def store_events(app: CrmApplication, events: int, versions: int = 10, per_save: int = 200) -> int:
    """`events` customer events: registrations then tags, `per_save` aggregates a save."""
    ctx = Context(
        actor="bench", actor_department="sales", occurred_at=datetime.now(UTC), correlation_id="b"
    )
    customers = [
        Customer.register(ctx, customer_id=uuid.uuid4(), name="N", owner_department="sales")
        for _ in range(events // versions)
    ]
    for version in range(1, versions + 1):
        for start in range(0, len(customers), per_save):
            chunk = customers[start : start + per_save]
            if version > 1:
                for customer in chunk:
                    customer.tag(ctx, f"tag{version}")
            app.record(*chunk)
    return len(customers) * versions


def time_relay(app: CrmApplication, pg_url: str, bootstrap: str, prefix: str) -> float:
    kafka_io.ensure_topics(bootstrap, all_topics(prefix), PARTITIONS)
    pool = ConnectionPool(pg_url, min_size=1, max_size=2, open=True)
    relay = Relay(
        app.recorder,
        lambda: kafka_io.Producer(bootstrap, client_id="bench-relay"),
        PostgresRelayPosition(pool),
        topic_prefix=prefix,
        page_size=PAGE_SIZE,
    )
    try:
        relay._ensure_producer()  # connect before the clock starts, as the raw run does
        started = time.perf_counter()
        relay.drain()
        return time.perf_counter() - started
    finally:
        relay.close()
        pool.close()


def prepared_records(app: CrmApplication, prefix: str) -> list[tuple[str, bytes, bytes]]:
    records: list[tuple[str, bytes, bytes]] = []
    position = 0
    while page := app.recorder.select_notifications(start=position + 1, limit=PAGE_SIZE):
        records.extend(encode_notification(n, prefix) for n in page)
        position = page[-1].id
    return records


def time_raw(
    records: list[tuple[str, bytes, bytes]], bootstrap: str, prefix: str, **config: Any
) -> float:
    """The baseline: kafka-python's own producer, same settings, bytes ready in memory.

    Stock partitioner unless `config` says otherwise: the relay's producer memoizes key
    hashes (`kafka_io.KeyHashCachingPartitioner`), which the raw run can be given too.
    """
    from kafka import KafkaProducer  # after kafka_io silenced kafka-python's import warning

    kafka_io.ensure_topics(bootstrap, all_topics(prefix), PARTITIONS)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, **{**kafka_settings.PRODUCER_DEFAULTS, **config}
    )
    headers = list(HEADERS)
    try:
        started = time.perf_counter()
        for topic, key, value in records:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush()
        return time.perf_counter() - started
    finally:
        producer.close()


def measure_latency(
    app: CrmApplication, pg_url: str, bootstrap: str, prefix: str, samples: int
) -> list[float]:
    """Milliseconds from a commit returning to the broker acknowledging that event.

    One event every 20 ms (light load); the relay is woken by LISTEN/NOTIFY and moves
    its position only once the broker has acknowledged everything up to it.
    """
    pool = ConnectionPool(pg_url, min_size=1, max_size=2, open=True)
    relay = Relay(
        app.recorder,
        lambda: kafka_io.Producer(bootstrap, client_id="bench-latency"),
        PostgresRelayPosition(pool),
        topic_prefix=prefix,
        wakeup=wakeup_for(app.recorder, pg_url),
    )
    relay.drain()  # start from the head: only the new events below count
    stop = threading.Event()
    relay_thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    relay_thread.start()
    ctx = Context(
        actor="bench", actor_department="sales", occurred_at=datetime.now(UTC), correlation_id="l"
    )
    latencies = []
    try:
        for _ in range(samples):
            customer = Customer.register(
                ctx, customer_id=uuid.uuid4(), name="N", owner_department="sales"
            )
            position = app.record(customer)[-1].notification.id
            committed = time.perf_counter()
            while relay.position < position and time.perf_counter() - committed < 10:
                time.sleep(0.0005)
            latencies.append((time.perf_counter() - committed) * 1000)
            time.sleep(0.02)
        return sorted(latencies)
    finally:
        stop.set()
        relay_thread.join(timeout=20)
        relay.close()
        pool.close()


def _percentile(ordered: list[float], pct: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))], 1)


def run(database_url: str, kafka_bootstrap: str, quick: bool = False) -> dict[str, Any]:
    events = 20_000 if quick else 200_000
    tag = uuid.uuid4().hex[:8]
    relay_prefix, raw_prefix = f"bench{tag}.relay.", f"bench{tag}.raw."
    cached_prefix, latency_prefix = f"bench{tag}.rawcached.", f"bench{tag}.latency."
    kafka_io.ensure_topics(kafka_bootstrap, all_topics(latency_prefix), PARTITIONS)
    with fresh_database(database_url) as pg_url:
        app = open_event_store(pg_url, None)
        try:
            stored = store_events(app, events)
            records = prepared_records(app, raw_prefix)
            raw_s = time_raw(records, kafka_bootstrap, raw_prefix)
            cached_s = time_raw(
                [(cached_prefix + topic[len(raw_prefix) :], k, v) for topic, k, v in records],
                kafka_bootstrap,
                cached_prefix,
                partitioner=kafka_io.KeyHashCachingPartitioner(),
            )
            relay_s = time_relay(app, pg_url, kafka_bootstrap, relay_prefix)
            latencies = measure_latency(
                app, pg_url, kafka_bootstrap, latency_prefix, 100 if quick else 500
            )
        finally:
            app.close()
    kafka_io.delete_topics(
        kafka_bootstrap,
        all_topics(relay_prefix)
        + all_topics(raw_prefix)
        + all_topics(cached_prefix)
        + all_topics(latency_prefix),
    )
    relay_rate, raw_rate, cached_rate = stored / relay_s, stored / raw_s, stored / cached_s
    return {
        "events": stored,
        "mean_value_bytes": round(sum(len(r[2]) for r in records) / len(records)),
        "relay_events_per_s": round(relay_rate),
        "raw_events_per_s": round(raw_rate),
        "ratio": round(relay_rate / raw_rate, 3),
        "target_ratio": 0.8,
        "raw_same_partitioner_events_per_s": round(cached_rate),
        "ratio_to_raw_same_partitioner": round(relay_rate / cached_rate, 3),
        "commit_to_ack_samples": len(latencies),
        "commit_to_ack_p50_ms": _percentile(latencies, 50),
        "commit_to_ack_p99_ms": _percentile(latencies, 99),
        "commit_to_ack_mean_ms": round(statistics.fmean(latencies), 1),
    }


if __name__ == "__main__":
    urls = os.environ["CRM_DATABASE_URL"], os.environ["CRM_KAFKA_BOOTSTRAP"]
    print(run(*urls, quick="--quick" in sys.argv))
