"""Process health (`consumers.process_health`) on a real PostgreSQL: read before any
relay or consumer made its table, then after one reported."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from consumers.pg_pool import open_pool
from consumers.process_health import HealthReport, read_health
from services.api.readiness import pipeline_check

pytestmark = pytest.mark.integration


def _rollbacks(url: str, pool: ConnectionPool) -> int:
    """Transactions rolled back in the database so far, the pool's own included (its one
    connection flushes its statistics when asked: PostgreSQL 15's
    `pg_stat_force_next_flush`)."""
    with pool.connection() as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_no_table_reads_as_no_process_without_a_failed_statement(pg_url: str) -> None:
    pool = open_pool(pg_url, max_size=1)
    try:
        before = _rollbacks(pg_url, pool)
        assert read_health(pool) == []
        assert read_health(pool) == []
        assert _rollbacks(pg_url, pool) == before  # a failed statement is a rolled-back transaction

        HealthReport(pool, "relay").down(frozenset({"kafka"}))
        (relay,) = read_health(pool)
    finally:
        pool.close()
    assert (relay.process, relay.down) == ("relay", ["kafka"])


def test_trouble_is_stored_read_and_read_from_a_table_that_predates_it(pg_url: str) -> None:
    """An API upgraded before the relay reads the older table (no `trouble` column) as
    no trouble; the relay's next start adds the column, and its signer's trouble shows."""
    pool = open_pool(pg_url, max_size=1)
    try:
        with pool.connection() as conn:
            conn.execute("DROP TABLE IF EXISTS crm_process_health")
            conn.execute(
                "CREATE TABLE crm_process_health (process text PRIMARY KEY, down text[] NOT "
                "NULL DEFAULT '{}', down_since timestamptz, watchdog_restarts bigint NOT NULL "
                "DEFAULT 0, writer_restarts bigint NOT NULL DEFAULT 0, pid integer, "
                "updated_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute("INSERT INTO crm_process_health (process) VALUES ('old-relay')")
        (old,) = read_health(pool)
        assert (old.process, old.trouble) == ("old-relay", None)

        report = HealthReport(pool, "relay")
        report.trouble("audit signer refusing to sign: the chain head changed")
        troubled = {row.process: row.trouble for row in read_health(pool)}
        assert troubled == {
            "old-relay": None,
            "relay": "audit signer refusing to sign: the chain head changed",
        }
        runtime: Any = SimpleNamespace(pool=pool)  # the one field the check reads
        assert pipeline_check(runtime) == (
            "relay: audit signer refusing to sign: the chain head changed"
        )
        report.trouble(None)
        assert {row.process: row.trouble for row in read_health(pool)}["relay"] is None
        assert pipeline_check(runtime) is None
    finally:
        pool.close()
