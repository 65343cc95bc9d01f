"""Process health (`consumers.process_health`) on a real PostgreSQL: read before any
relay or consumer made its table, then after one reported."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from consumers.pg_pool import open_pool
from consumers.process_health import HealthReport, read_health

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
