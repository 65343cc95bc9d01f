"""Shared pieces of the tests that run `crm relay` as a process on an audited
PostgreSQL store (`audit_support.audited`): start it, see where it got, stop it."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from consumers.envelope import all_topics, read_cloudevent
from consumers.kafka_io import read_all
from consumers.process_health import read_health
from tests.e2e.processes import eventually
from tests.integration.audit_support import CRM, ROOT, Audited, fill, positions


def start_relay(store: Audited, bootstrap: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    env = store.full_env(
        {
            "CRM_KAFKA_BOOTSTRAP": bootstrap,
            "CRM_TOPIC_PREFIX": prefix,
            "CRM_AUDIT_CHECKPOINT_EVENTS": "5",
            "CRM_AUDIT_CHECKPOINT_SECONDS": "1",
        }
    )
    with log.open("wb") as out:
        return subprocess.Popen([*CRM, "relay"], cwd=ROOT, env=env, stdout=out, stderr=out)


def stored_position(store: Audited) -> int:
    if store.sql("SELECT to_regclass('crm_relay_position')")[0][0] is None:
        return 0  # the relay has not made it yet
    rows = store.sql("SELECT position FROM crm_relay_position")
    return int(rows[0][0]) if rows else 0


def relay_trouble(pool: ConnectionPool) -> str | None:
    return {row.process: row.trouble for row in read_health(pool)}.get("relay")


def published_positions(bootstrap: str, prefix: str) -> set[int]:
    return {read_cloudevent(r.value).position for r in read_all(bootstrap, all_topics(prefix))}


def relay_started(store: Audited, relay: subprocess.Popen[bytes]) -> None:
    fill(store.app)
    head = positions(store)[-1]
    eventually(lambda: stored_position(store) >= head, within=120, what="the relay")
    eventually(store.log.latest_checkpoint, within=60, what="a first checkpoint")
    assert relay.poll() is None


def stopped_by_sigterm(relay: subprocess.Popen[bytes]) -> None:
    relay.send_signal(signal.SIGTERM)
    try:
        code = relay.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("the relay was still running 5 s after SIGTERM")
    assert code == 0


def caught_up_without_a_gap(
    store: Audited, pool: ConnectionPool, bootstrap: str, prefix: str
) -> None:
    """The relay has stored the log's head as its position, reports no trouble, and
    every stored event is on Kafka."""
    head = positions(store)[-1]
    eventually(lambda: stored_position(store) >= head, within=60, what="the rest")
    eventually(lambda: relay_trouble(pool) is None, within=30, what="the trouble cleared")
    assert published_positions(bootstrap, prefix) == set(positions(store))
