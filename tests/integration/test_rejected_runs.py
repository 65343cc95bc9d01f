"""Rejected records kept as runs, on both read-model stores and from real Kafka.

Whoever can produce to the topics chose how many `_rejected` rows a consumer wrote: one
per record per projection, never deleted (50,000 one-byte records, 2.5 MB of Kafka log,
made 250,000 rows, 56 MB in PostgreSQL). Now consecutive rejections of a partition with
the same claimed position and reason are one row (first and last offset, how many), a
generation keeps its newest `rejected_runs.ROWS` rows, and `_status.rejected` (status,
/readyz, /metrics) still counts every record. Growth is measured in rows and bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from consumers import pg_bookkeeping
from consumers.envelope import HEADERS, all_topics, topic_name
from consumers.kafka_io import Producer, ensure_topics
from consumers.projecting import Item, project
from consumers.readmodel_store import ReadModelStore
from consumers.rejected_runs import ROWS
from consumers.store_postgres import PostgresStore
from consumers.store_sqlite import SqliteStore
from projections import PROJECTIONS
from tests.integration.projection_support import open_store, tables_of
from tests.integration.test_forged_records import crm

pytestmark = pytest.mark.integration
RUN_COLUMNS = "topic, partition, kafka_offset, last_offset, position, reason, records"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModelStore]:
    opened = open_store(request, tmp_path)
    yield opened
    opened.close()


def refused(partition: int, offset: int, reason: str) -> Item:
    return Item("t", partition, offset, 0, b"x", None, reason, refused=True)


def rows(store: ReadModelStore, name: str) -> list[dict[str, Any]]:
    table = {"r": f"{name}_v{store.live_generation(name)}._rejected"}
    return store.fetch(f"SELECT {RUN_COLUMNS} FROM {{r}} ORDER BY id", table, {})


def row_count(store: ReadModelStore, name: str) -> int:
    table = {"r": f"{name}_v{store.live_generation(name)}._rejected"}
    return int(store.fetch("SELECT count(*) AS n FROM {r}", table, {})[0]["n"])


def test_junk_is_one_row_per_partition_and_distinct_reasons_are_capped(
    store: ReadModelStore,
) -> None:
    projection = PROJECTIONS["stats"]
    generation = store.install(projection)
    junk = [refused(n % 2, n // 2, "InvalidEnvelope: not a CloudEvent") for n in range(3000)]
    claims = [refused(2, n, f"not as stored at position {n}") for n in range(ROWS + 200)]
    for batch in (junk[:1000], junk[1000:], claims[:700], claims[700:]):
        with store.session(projection, generation) as session:
            project(session, projection, batch)
    assert store.status("stats").rejected == 3000 + ROWS + 200  # every record counted
    assert row_count(store, "stats") == ROWS
    kept = rows(store, "stats")  # the newest: the distinct claims, past the junk runs
    assert kept[0]["reason"] == "not as stored at position 200"
    assert kept[-1]["reason"] == f"not as stored at position {ROWS + 199}"
    with store.session(projection, generation) as session:  # partition 0's run was deleted
        project(session, projection, [refused(0, 1500, "InvalidEnvelope: not a CloudEvent")])
    newest = rows(store, "stats")[-1]
    assert (newest["partition"], newest["kafka_offset"], newest["records"]) == (0, 1500, 1)
    assert store.status("stats").rejected == 3001 + ROWS + 200


def test_a_generation_made_before_runs_gets_their_columns(store: ReadModelStore) -> None:
    """A generation this release's predecessor made has the count, and a `_rejected`
    without the runs' columns, holding rows of one record each."""
    projection = PROJECTIONS["stats"]
    generation = store.install(projection)
    with store.session(projection, generation) as session:
        project(session, projection, [refused(0, 0, "old")])
    _drop_run_columns(store, f"stats_v{generation}")
    reopened = store.opener()()  # another process: it finds them missing
    try:
        with reopened.session(projection, generation) as session:
            project(session, projection, [refused(0, n, "old") for n in (1, 2)])
        assert rows(reopened, "stats") == [
            {"topic": "t", "partition": 0, "kafka_offset": 0, "last_offset": 2, "position": 0,
             "reason": "old", "records": 3},
        ]  # fmt: skip
        assert reopened.status("stats").rejected == 3
    finally:
        reopened.close()


def _drop_run_columns(store: ReadModelStore, schema: str) -> None:
    if isinstance(store, PostgresStore):
        with store.pool.connection() as conn:
            for column in ("last_offset", "records", "last_at"):
                conn.execute(f'ALTER TABLE "{schema}"._rejected DROP COLUMN {column}')
        pg_bookkeeping._WITH_RUNS.discard(schema)  # what this process knew
    else:
        assert isinstance(store, SqliteStore)
        with store.lock:
            for column in ("last_offset", "records", "last_at"):
                store.conn.execute(f'ALTER TABLE "{schema}___rejected" DROP COLUMN {column}')


N = 20_000
CONSUMED = ("stats", "shared")


def test_junk_on_kafka_grows_the_count_not_the_rows_and_a_rebuild_keeps_them(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """N one-byte records on a topic of 3 partitions: 3 rows a projection, holding N."""
    ensure_topics(kafka_bootstrap, all_topics(topic_prefix), partitions=3)
    topic = topic_name("customer", topic_prefix)
    with Producer(kafka_bootstrap, client_id="intruder") as producer:
        producer.confirm(producer.send_many(((topic, None, b"x") for _ in range(N)), HEADERS))
    at = (pg_url, kafka_bootstrap, topic_prefix)
    for name in CONSUMED:
        done = crm(*at, "consume", name, "--until-caught-up", "--batch", "777")
        assert done.returncode == 0, done.stderr[-2000:]
    with closing(PostgresStore(pg_url)) as store:
        assert [row_count(store, name) for name in CONSUMED] == [3, 3]  # not N each
        assert _bytes_of_rows(pg_url, store, CONSUMED) < 3 * len(CONSUMED) * 300
        consumed = {name: (rows(store, name), tables_of(store, name)) for name in CONSUMED}
        for name in CONSUMED:
            assert store.status(name).rejected == N
            kept = consumed[name][0]
            assert sorted(r["partition"] for r in kept) == [0, 1, 2]
            assert sum(r["records"] for r in kept) == N
            assert all(r["kafka_offset"] == 0 for r in kept)
        listed = crm(*at, "projections", "rejected", "stats", "--json")
        shown = crm(*at, "projections", "rejected", "stats")
        for name in CONSUMED:  # from offset 0 again, in other batches
            assert crm(*at, "projections", "rebuild", name).returncode == 0
        rebuilt = {name: (rows(store, name), tables_of(store, name)) for name in CONSUMED}
        assert [store.status(name).rejected for name in CONSUMED] == [N, N]
    assert {n: sorted(map(repr, r)) for n, (r, _) in rebuilt.items()} == {
        n: sorted(map(repr, r)) for n, (r, _) in consumed.items()
    }
    assert {n: t for n, (_, t) in rebuilt.items()} == {n: t for n, (_, t) in consumed.items()}
    assert listed.returncode == shown.returncode == 0, listed.stderr + shown.stderr
    assert sum(row["records"] for row in json.loads(listed.stdout)) == N
    assert len(shown.stdout.splitlines()) == 3
    assert " records since " in shown.stdout


def _bytes_of_rows(pg_url: str, store: PostgresStore, names: tuple[str, ...]) -> int:
    """What the live `_rejected` rows hold, in bytes (not the pages vacuum has yet to
    reclaim: a run's row is rewritten as it grows)."""
    total = 0
    with psycopg.connect(pg_url) as conn:
        for name in names:
            schema = f"{name}_v{store.live_generation(name)}"
            query = f'SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM "{schema}"._rejected r'
            row = conn.execute(query.encode()).fetchone()
            assert row is not None
            total += int(row[0])
    return total
