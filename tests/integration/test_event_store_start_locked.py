"""`crm` processes start while another session holds `LOCK TABLE crm_events`.

Every process opens the event store as it starts (`services.event_store_tables`), and
eventsourcing's `CREATE UNIQUE INDEX IF NOT EXISTS` on the events table asked for a lock
on it even with the index there: `crm relay status`, `crm relay` and `crm api` hung
before their first line, health row or answer, and SIGTERM waited with them. Now an
existing index's creation is left out: they start, say why they wait where they read
the table, and stop on SIGTERM. A new database is still made whole. Real PostgreSQL
(and Kafka for the relay); the lock is taken by another connection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from consumers.pg_pool import open_pool
from consumers.process_health import read_health
from services.event_store import open_event_store
from tests.e2e.processes import crm_processes, eventually, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # kafka-python's sockets
]
ROOT = Path(__file__).resolve().parents[2]
LOCKED = "LOCK TABLE crm_events IN ACCESS EXCLUSIVE MODE"


@pytest.fixture
def made(pg_url: str) -> str:
    """A database whose event store has been opened once: its tables all made."""
    open_event_store(pg_url, None).close()
    return pg_url


@pytest.fixture
def holder(made: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Another session holding the events table's lock until the test ends."""
    with psycopg.connect(made) as conn:
        conn.execute(LOCKED)
        yield conn
        conn.rollback()


def test_relay_status_says_who_holds_the_lock(
    made: str, holder: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    """Fails before: still running 60 s later (its start waited on the index's lock)."""
    env = {**os.environ, "CRM_DATABASE_URL": made, "CRM_DATA_DIR": str(tmp_path)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "relay", "status"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("crm relay status was still running 60 s later")
    assert done.returncode == 1
    assert "waiting for a lock on public.crm_events" in done.stderr
    assert f"held by pid {holder.info.backend_pid} (" in done.stderr


def test_an_api_answers_and_stops_on_sigterm(
    made: str, holder: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    """Fails before: /healthz never answered (gave up after 60 s)."""
    port = free_port()
    env = {"CRM_DATABASE_URL": made, "CRM_DATA_DIR": str(tmp_path / "data")}
    with crm_processes(env, tmp_path) as crm:
        api = crm.serve("api", port)
        _stopped_by_sigterm(api, "crm api")


def test_a_relay_reports_the_lock_and_stops_on_sigterm(
    made: str,
    holder: psycopg.Connection[tuple[object, ...]],
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    """Fails before: no health row in 60 s (its start waited on the index's lock)."""
    env = {
        "CRM_DATABASE_URL": made,
        "CRM_DATA_DIR": str(tmp_path / "data"),
        "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CRM_TOPIC_PREFIX": topic_prefix,
    }
    pool = open_pool(made, max_size=1)
    with pool, crm_processes(env, tmp_path) as crm:
        relay = crm.start("relay")

        def trouble() -> str | None:
            rows = {row.process: row.trouble for row in read_health(pool)}
            return rows.get("relay")

        said = eventually(trouble, within=60, what="the relay's health row naming the lock")
        assert "not read: waiting for a lock on public.crm_events" in said
        assert f"held by pid {holder.info.backend_pid} (" in said
        _stopped_by_sigterm(relay, "crm relay")


def test_a_new_database_is_made_whole_and_a_reopened_one_keeps_its_functions(
    pg_url: str,
) -> None:
    """The index is made on a new database; with it there, the rest still runs (a
    dropped insert function is made again)."""
    open_event_store(pg_url, None).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        found = "SELECT to_regclass('crm_events_notification_id_idx') IS NOT NULL"
        assert conn.execute(found).fetchone() == (True,)
        conn.execute("DROP FUNCTION crm_events_insert_locked")
        open_event_store(pg_url, None).close()
        function = "SELECT to_regproc('crm_events_insert_locked') IS NOT NULL"
        assert conn.execute(function).fetchone() == (True,)


def _stopped_by_sigterm(process: subprocess.Popen[bytes], name: str) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} was still running 10 s after SIGTERM")
    assert code == 0
