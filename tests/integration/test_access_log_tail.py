"""`crm audit verify-access` sees the access log's tail removed, against the real
PostgreSQL (or the embedded SQLite store) and the real Kafka broker.

An intruder with write access to the database deletes the last records (their own
reads): the chain that is left still verified. Now a store ending below the position
the relay recorded as published (`crm_access_published`) is a deletion; and when the
intruder lowers that row too, or rewrites a record and relinks the chain after it (the
links are not keyed), `--kafka` compares the store with what the relay's publisher put
on `crm.access.v1`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from bench.databases import fresh_database
from domain.chain_walk import BreakKind
from services.access.rules import Principal, Role
from services.access_log import AccessLog
from services.access_log_store import PostgresAccessStore, SqliteAccessStore
from services.access_topic import AccessPublisher, ensure_access_topic
from services.bootstrap import connect_pool
from services.cli_audit_access import verify_access
from tests.integration.audit_support import CRM, ROOT
from tests.unit.services.test_verify_access_tail import rewritten


@dataclass
class Logged:
    """An access log on one backend, raw SQL on it, and what `crm` needs to open it."""

    store: PostgresAccessStore | SqliteAccessStore
    sql: Callable[..., None]  # (statement with %s placeholders, *params)
    env: dict[str, str]

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CRM, "audit", "verify-access", *args], cwd=ROOT, env=self.env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip


@pytest.fixture(params=["postgres", "sqlite"])
def logged(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> Iterator[Logged]:
    env = {**os.environ, "CRM_DATA_DIR": str(tmp_path), "CRM_DATABASE_URL": ""}
    env |= {"CRM_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRM_TOPIC_PREFIX": topic_prefix}
    if request.param == "sqlite":
        path = tmp_path / "access.db"

        def on_sqlite(statement: str, *params: object) -> None:
            with closing(sqlite3.connect(path, isolation_level=None)) as db:
                db.execute(statement.replace("%s", "?"), params)

        sqlite_store = SqliteAccessStore(path)
        yield Logged(sqlite_store, on_sqlite, env)
        sqlite_store.close()
        return
    with fresh_database(request.getfixturevalue("server_url"), prefix="crm_access") as url:
        pool = connect_pool(url)

        def on_postgres(statement: str, *params: object) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(statement.encode(), params)

        try:
            yield Logged(PostgresAccessStore(pool), on_postgres, env | {"CRM_DATABASE_URL": url})
        finally:
            pool.close()


def _published(logged: Logged, bootstrap: str, prefix: str, reads: int = 5) -> None:
    """`reads` unmasked reads recorded, and published by the relay's access publisher."""
    log = AccessLog(logged.store, flush_seconds=60)
    for name in (f"reader{n}" for n in range(reads)):
        who = Principal(name=name, department="sales", role=Role.MANAGER)
        log.reveal(who, "GET /v1/customers/{customer_id}", {uuid.uuid4(): ["email"]})
    log.flush()
    ensure_access_topic(bootstrap, prefix)
    publisher = AccessPublisher(logged.store, bootstrap, prefix)
    try:
        assert publisher.publish_pending() == reads
    finally:
        publisher.close()


def _remove_tail(logged: Logged, after: int) -> None:
    logged.sql("DELETE FROM crm_access_subjects WHERE position > %s", after)
    logged.sql("DELETE FROM crm_access_log WHERE position > %s", after)


def test_a_tail_removed_below_what_the_relay_published_is_a_deletion(
    logged: Logged, kafka_bootstrap: str, topic_prefix: str
) -> None:
    _published(logged, kafka_bootstrap, topic_prefix)
    assert verify_access(logged.store) == (5, None)
    _remove_tail(logged, 3)
    count, broken = verify_access(logged.store)
    assert broken is not None
    assert (count, broken.kind, broken.position) == (3, BreakKind.DELETED, 5)
    assert "the store ends at 3" in broken.detail


def test_kafka_shows_a_tail_removed_with_the_published_position_lowered(
    logged: Logged, kafka_bootstrap: str, topic_prefix: str
) -> None:
    _published(logged, kafka_bootstrap, topic_prefix)
    intact = logged.verify("--kafka")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "intact: 5 records, as are the 5 records on Kafka" in intact.stdout
    _remove_tail(logged, 3)
    logged.sql("UPDATE crm_access_published SET position = 3")
    alone = logged.verify()
    assert alone.returncode == 0, alone.stdout + alone.stderr  # the store alone looks intact
    result = logged.verify("--kafka")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "deleted at position 4" in result.stderr
    assert "which now ends at 3" in result.stderr


def test_kafka_shows_a_published_record_edited_and_relinked(
    logged: Logged, kafka_bootstrap: str, topic_prefix: str
) -> None:
    _published(logged, kafka_bootstrap, topic_prefix)
    _rewrite(logged, 2)
    alone = logged.verify()
    assert alone.returncode == 0, alone.stdout + alone.stderr  # the chain, relinked, holds
    result = logged.verify("--kafka")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "edited at position 2" in result.stderr


def _rewrite(logged: Logged, position: int) -> None:
    record, links = rewritten(logged.store, position)
    logged.sql("UPDATE crm_access_log SET record = %s WHERE position = %s", record, position)
    for linked, chain in links:
        logged.sql("UPDATE crm_access_log SET chain = %s WHERE position = %s", chain, linked)
