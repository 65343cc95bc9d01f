"""Two `crm relay` processes on one signing key: the second waits, says why, writes
nothing beside the key, and takes over once the first stops, with no event missing on
Kafka (before: both ran, and both wrote `<key>.published`). Real PostgreSQL and Kafka.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.relay_key_lock import lock_path
from tests.e2e.processes import eventually
from tests.integration.audit_support import Audited, audited, fill, positions
from tests.integration.relay_processes import (
    published_positions,
    relay_started,
    start_relay,
    stopped_by_sigterm,
    stored_position,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # kafka-python's sockets
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[Audited]:
    with audited("postgres", tmp_path, pg_url) as chained:
        yield chained


def test_a_second_relay_on_one_key_waits_and_takes_over(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Fails before: the second relay started at once (never said it waited)."""
    first = start_relay(store, kafka_bootstrap, topic_prefix, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        relay_started(store, first)
        second = start_relay(store, kafka_bootstrap, topic_prefix, tmp_path / "second.log")

        def waiting() -> str | None:
            text = (tmp_path / "second.log").read_text()
            return text if "relay waiting for its signing key" in text else None

        said = eventually(waiting, within=60, what="the second relay to say it waits")
        assert f"pid {first.pid}" in said
        assert "relay started" not in said
        stopped_by_sigterm(first)
        fill(store.app)  # for the second relay alone
        head = positions(store)[-1]
        eventually(lambda: stored_position(store) >= head, within=120, what="the takeover")
        assert "relay started" in (tmp_path / "second.log").read_text()
        assert published_positions(kafka_bootstrap, topic_prefix) == set(positions(store))
        stopped_by_sigterm(second)
    finally:
        for relay in (first, second):
            if relay is not None and relay.poll() is None:
                relay.kill()
                relay.wait(timeout=60)


def test_adopting_refuses_while_a_relay_runs_on_the_key(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """`crm audit checkpoint --adopt` may rewrite `<key>.published` and `.last-signed`,
    which the running relay and its signer write. Fails before: it adopted (exit 0)."""
    relay = start_relay(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    try:
        relay_started(store, relay)
        refused = store.crm("audit", "checkpoint", "--adopt")
        assert refused.returncode == 1, refused.stderr
        assert "not adopting: a relay of this signing key is running" in refused.stderr
        assert f"pid {relay.pid} holds {lock_path(store.key.path)}" in refused.stderr
        stopped_by_sigterm(relay)
        adopted = store.crm("audit", "checkpoint", "--adopt")
        assert adopted.returncode == 0, adopted.stderr
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait(timeout=60)


def test_a_relay_whose_lock_file_another_relay_replaced_and_locked_stops_exit_5(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """The lock file looks like a stale pid file; deleted, another relay locks a new one
    there. Fails before: the relay ran on (both wrote `<key>.published`)."""
    relay = start_relay(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    other = tmp_path / "other.lock"
    other.write_text("12345\n")
    other_relay = os.open(other, os.O_RDWR)
    try:
        relay_started(store, relay)
        fcntl.flock(other_relay, fcntl.LOCK_EX)
        os.replace(other, lock_path(store.key.path))
        assert relay.wait(timeout=60) == 5
        said = (tmp_path / "relay.log").read_text()
        assert "relay lost its signing key" in said
        assert "crm relay: stopped:" in said
        assert "pid 12345 holds the lock file there now" in said
    finally:
        os.close(other_relay)
        if relay.poll() is None:
            relay.kill()
            relay.wait(timeout=60)
