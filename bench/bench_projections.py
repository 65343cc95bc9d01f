"""Projection replay from Kafka into PostgreSQL read models: events/s and consumer memory.

Stores N events of a seeded random workload in the event store of a fresh database and
publishes them, as the relay does, to fresh topics (`bench.replay_data`, not timed):
the consumers check every record against that store (`consumers.as_stored`). Then for
each projection runs `crm consume NAME --until-caught-up` as a subprocess against the
same database and times it, sampling
VmRSS and VmHWM from /proc of the consumer and its writer process together (the
consumer's memory is both: RSS is summed, and the peak is the sum of each process's
own peak, an upper bound of their peak together). Baselines in the same run, over the same
records: kafka-python alone (consume, no decode), consume + CloudEvent/event decode
without projecting, and the same replay with `--single-process` (reading and writing
in one process, as before the writer process existed).
Targets: >= 20,000 events/s per projection; <= 200 MB RSS, flat.

`python -m bench.bench_projections [--events N] [--only NAME ...]`
(needs CRM_DATABASE_URL and CRM_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

from psycopg import sql
from psycopg_pool import ConnectionPool

from bench.databases import fresh_database
from bench.replay_data import copy_keys, publish
from consumers import kafka_io
from consumers.envelope import all_topics, from_cloudevent
from consumers.store_postgres import PostgresStore, generations
from projections import PROJECTIONS

SAMPLE_SECONDS = 0.25


def baseline(bootstrap: str, prefix: str, *, decode: bool) -> float:
    """Records/s of reading the topics (and decoding each record) without projecting."""
    started, count = time.perf_counter(), 0
    for record in kafka_io.read_all(bootstrap, all_topics(prefix)):
        if decode:
            from_cloudevent(record.value)
        count += 1
    return count / (time.perf_counter() - started)


def consume(name: str, env: dict[str, str], events: int, *options: str) -> dict[str, Any]:
    """Run one consumer to the end of the topics; its rate and memory samples (MB).

    `events_per_s` is over the whole process, start-up included; `steady_events_per_s`
    is from its first committed batch to its last (read from its JSON batch lines),
    the rate a long replay converges to."""
    command = [sys.executable, "-m", "services.cli", "consume", name, "--until-caught-up"]
    command += options
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)  # noqa: S603 - fixed argv
    batches: list[tuple[float, int]] = []
    reader = threading.Thread(target=_batch_lines, args=(process.stdout, batches), daemon=True)
    reader.start()
    samples: list[tuple[float, float]] = []
    peaks: dict[int, float] = {}
    while process.poll() is None:
        pids = [process.pid, *_children(process.pid)]
        memory = {pid: _memory(pid) for pid in pids}
        if rss := sum(m[0] for m in memory.values()):  # 0 once the processes have exited
            samples.append((time.perf_counter(), rss))
        peaks.update({pid: max(peaks.get(pid, 0.0), m[1]) for pid, m in memory.items()})
        time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    reader.join()
    if process.returncode != 0:
        raise RuntimeError(f"crm consume {name} exited with {process.returncode}")
    return {
        "events_per_s": round(events / seconds),
        "seconds": round(seconds, 1),
        **steady_rate(batches, started),
        "peak_rss_mb": round(sum(peaks.values()), 1),
        "peak_rss_by_process_mb": [round(peak, 1) for peak in peaks.values()],
        **rss_profile(samples, batches),
    }


def forget(database_url: str, name: str) -> None:
    """Drop every generation of projection `name` and its views: the next run starts over."""
    store = PostgresStore(database_url)
    try:
        with store.pool.connection() as conn:
            for generation in generations(conn, name):
                store.drop_generation(name, generation)
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
            conn.execute("DELETE FROM crm_projections WHERE name = %s", (name,))
    finally:
        store.close()


def _batch_lines(stream: IO[bytes], batches: list[tuple[float, int]]) -> None:
    """(arrival time, events) of every JSON `batch` line the consumer writes."""
    for line in stream:
        entry = json.loads(line) if line.startswith(b"{") else {}
        if entry.get("event") == "batch":
            batches.append((time.perf_counter(), int(entry["events"])))


def steady_rate(batches: list[tuple[float, int]], started: float) -> dict[str, Any]:
    """Events/s after the first batch committed, and how long start-up took until then."""
    if len(batches) < 2:
        return {}
    (first, _), (last, _) = batches[0], batches[-1]
    after_first = sum(count for _, count in batches[1:])
    return {
        "steady_events_per_s": round(after_first / (last - first)),
        "first_batch_s": round(first - started, 2),
    }


def rss_profile(
    timed: list[tuple[float, float]], batches: list[tuple[float, int]]
) -> dict[str, Any]:
    """VmRSS at every tenth of the replay, and how much it moved over its second half.

    Only samples from the first committed batch to the last count: start-up (before
    the writer process exists) and shut-down (after it exited) are not the replay."""
    if batches:
        first, last = batches[0][0], batches[-1][0]
        timed = [sample for sample in timed if first <= sample[0] <= last] or timed
    samples = [rss for _, rss in timed]
    if not samples:
        return {}
    tenths = [round(samples[min(len(samples) - 1, len(samples) * i // 10)], 1) for i in range(11)]
    second_half = samples[len(samples) // 2 :]
    return {
        "rss_by_tenth_mb": tenths,
        "rss_second_half_range_mb": round(max(second_half) - min(second_half), 1),
    }


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


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
        copy_keys(publish(kafka_bootstrap, prefix, count, keys_url), pool)
        seconds = time.perf_counter() - started
        figures["publish_msgs_per_s"] = round(count / seconds)
        read = round(baseline(kafka_bootstrap, prefix, decode=False))
        decoded = round(baseline(kafka_bootstrap, prefix, decode=True))
        figures["baseline_read_per_s"], figures["baseline_read_decode_per_s"] = read, decoded
        print(figures, flush=True)
        for name in only or list(PROJECTIONS):
            env = {
                **os.environ, "CRM_DATABASE_URL": keys_url, "CRM_TOPIC_PREFIX": prefix,
                "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRM_LOG_LEVEL": "info",
                "CRM_LOG_FORMAT": "json",
            }  # fmt: skip
            result = consume(name, env, count)
            forget(keys_url, name)  # the same replay again, in one process: the baseline
            single = consume(name, env, count, "--single-process")
            result["single_process"] = single
            result["ratio_to_single_process"] = round(
                result["events_per_s"] / single["events_per_s"], 3
            )
            result["ratio_to_read_decode"] = round(result["events_per_s"] / decoded, 3)
            result["ratio_to_read"] = round(result["events_per_s"] / read, 3)
            if "steady_events_per_s" in result:
                steady = result["steady_events_per_s"] / decoded
                result["steady_ratio_to_read_decode"] = round(steady, 3)
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
