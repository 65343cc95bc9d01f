"""`crm relay` through a lock held on its position row and on the checkpoints table
(red team: an intruder's or a migration's `LOCK TABLE` held the relay's position save
and the signer's statements for as long as it was held, and SIGTERM ~10 s). Each
statement now waits `LOCK_TIMEOUT_S` at most and tries again: the relay keeps running,
its health row names the lock and who holds it, a SIGTERM stops it within seconds, and
once the lock is let go it carries on with no event missing on Kafka. Real PostgreSQL
and Kafka; the lock is taken by another connection, as an intruder would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from consumers.pg_lock_wait import LockWaitTimedOut
from consumers.pg_pool import open_pool
from consumers.relay_position import PostgresRelayPosition, relay_status
from tests.e2e.processes import eventually
from tests.integration.audit_support import Audited, audited, fill
from tests.integration.relay_processes import (
    caught_up_without_a_gap,
    relay_started,
    relay_trouble,
    start_relay,
    stopped_by_sigterm,
    stored_position,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # kafka-python's sockets
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
LOCKED = "LOCK TABLE crm_relay_position, crm_events_checkpoints"  # ACCESS EXCLUSIVE


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[Audited]:
    with audited("postgres", tmp_path, pg_url) as chained:
        yield chained


def test_a_relay_rides_out_a_lock_reports_it_and_carries_on_without_a_gap(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Fails before: the position save waited for as long as the lock was held, and the
    health row said nothing (gave up waiting for the trouble)."""
    relay = start_relay(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    pool = open_pool(store.env["CRM_DATABASE_URL"], max_size=1)
    try:
        relay_started(store, relay)
        stored_before = stored_position(store)

        with psycopg.connect(store.env["CRM_DATABASE_URL"]) as holder:
            holder.execute(LOCKED)
            pid = holder.info.backend_pid
            fill(store.app)  # stored while the row is locked

            def both_said() -> str | None:
                said = relay_trouble(pool) or ""
                return said if "crm_relay_position" in said and "signer" in said else None

            said = eventually(both_said, within=30, what="the health row to name the locks")
            assert "not stored: waiting for a lock on crm_relay_position" in said
            assert f"held by pid {pid} (" in said
            assert "audit signer failing" in said
            assert "crm_events_checkpoints" in said
            time.sleep(2)
            assert relay.poll() is None, "the relay exited"
            row = holder.execute("SELECT position FROM crm_relay_position").fetchone()
            assert row == (stored_before,)  # only the holder can read it now
            holder.rollback()  # the lock let go
        caught_up_without_a_gap(store, pool, kafka_bootstrap, topic_prefix)
        text = (tmp_path / "relay.log").read_text()
        assert "relay waiting for a lock" in text
        assert "relay lock wait over" in text
    finally:
        pool.close()
        relay.terminate()
        relay.wait(timeout=60)


def test_sigterm_stops_a_relay_promptly_while_the_lock_is_held(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Fails before: still running 5 s after SIGTERM (the position save and the signer's
    thread both waited on the lock)."""
    relay = start_relay(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    try:
        relay_started(store, relay)
        with psycopg.connect(store.env["CRM_DATABASE_URL"]) as holder:
            holder.execute(LOCKED)
            fill(store.app)  # the relay publishes them and waits to store the position
            eventually(lambda: _lock_waited(store), within=30, what="a wait on the lock")
            time.sleep(1.5)  # the signer's next ticks meet the lock too
            stopped_by_sigterm(relay)
            holder.rollback()
        assert "relay stopped" in (tmp_path / "relay.log").read_text()
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait(timeout=60)


def _lock_waited(store: Audited) -> bool:
    """Some session has waited for a lock on the position row (or waits now), as the
    server reports it: a lock wait now, or the relay's log having named it."""
    rows = store.sql(
        "SELECT count(*) FROM pg_locks l WHERE NOT l.granted"
        " AND l.relation = to_regclass('crm_relay_position')"
    )
    return bool(rows[0][0]) or "relay waiting for a lock" in _log_text(store)


def _log_text(store: Audited) -> str:
    path = Path(store.env["CRM_DATA_DIR"]) / "relay.log"
    return path.read_text() if path.exists() else ""


EVENTS_LOCKED = "LOCK TABLE crm_events"  # ACCESS EXCLUSIVE: no reader goes through


def test_a_relay_rides_out_a_lock_on_the_event_log_and_catches_up(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Fails before: the page read waited for as long as the lock was held, and the
    health row named no page read (gave up waiting for it)."""
    relay = start_relay(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    pool = open_pool(store.env["CRM_DATABASE_URL"], max_size=1)
    try:
        relay_started(store, relay)
        with psycopg.connect(store.env["CRM_DATABASE_URL"]) as holder:
            holder.execute(EVENTS_LOCKED)
            pid = holder.info.backend_pid

            def both_said() -> str | None:
                said = relay_trouble(pool) or ""
                return said if said.count(f"held by pid {pid} (") == 2 else None

            said = eventually(both_said, within=30, what="the relay and its signer to name it")
            assert said.startswith(
                f"notifications after {stored_position(store)} not read: waiting for a lock"
                " on public.crm_events (each wait ends after 0.5 s, then tries again): held by"
                f" pid {pid} ("
            )  # the relay's line, then its signer's, each naming the holder
            time.sleep(2)
            assert relay.poll() is None, "the relay exited"
            holder.rollback()  # the lock let go
        fill(store.app)
        caught_up_without_a_gap(store, pool, kafka_bootstrap, topic_prefix)
    finally:
        pool.close()
        relay.terminate()
        relay.wait(timeout=60)


def test_sigterm_stops_a_relay_promptly_while_the_event_log_is_locked(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Fails before: still running 5 s after SIGTERM (its page read waited on the lock)."""
    relay = start_relay(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    try:
        relay_started(store, relay)
        with psycopg.connect(store.env["CRM_DATABASE_URL"]) as holder:
            holder.execute(EVENTS_LOCKED)
            eventually(lambda: _page_read_waited(store), within=30, what="a page read waiting")
            stopped_by_sigterm(relay)
            holder.rollback()
        assert "relay stopped" in (tmp_path / "relay.log").read_text()
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait(timeout=60)


def test_relay_status_names_a_lock_on_the_event_log(store: Audited) -> None:
    """`crm relay status`'s and `/metrics`' reads. Fails before: they waited for as long
    as the lock was held (still waiting 30 s later)."""
    pool = open_pool(store.env["CRM_DATABASE_URL"], max_size=1)
    positions = PostgresRelayPosition(pool)  # its table made: only crm_events is locked
    answers: list[object] = []

    def status() -> None:
        try:
            answers.append(relay_status(store.app.recorder, positions))
        except LockWaitTimedOut as error:
            answers.append(error)

    try:
        with psycopg.connect(store.env["CRM_DATABASE_URL"]) as holder:
            holder.execute(EVENTS_LOCKED)
            pid = holder.info.backend_pid
            asking = threading.Thread(target=status)
            asking.start()
            asking.join(timeout=30)
            waited = asking.is_alive()
            holder.rollback()
        asking.join()
    finally:
        pool.close()
    assert not waited, "relay_status was still waiting 30 s later"
    assert isinstance(answers[0], LockWaitTimedOut)
    assert "head of the log not read: waiting for a lock on public.crm_events" in str(answers[0])
    assert f"held by pid {pid} (" in str(answers[0])


def _page_read_waited(store: Audited) -> bool:
    """A session waits for a lock on the event log now, other than a writer's insert."""
    rows = store.sql(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE NOT l.granted AND l.relation = to_regclass('crm_events')"
        " AND a.query ILIKE 'SELECT notification_id, originator_id, originator_version%%'"
    )
    return bool(rows[0][0])
