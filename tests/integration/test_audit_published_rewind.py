"""Moving `crm_relay_position` forward no longer skips publishing (red team rt3 F3): an
intruder who could write that row made the relay start past events it never published;
they never reached Kafka nor the read models, and the signer signed them. The relay
writes its head beside the signer's key before it stores each position, so a stored
position past that head was moved: `crm relay` starts from the head, publishes the
events between (consumers skip what they already applied:
tests/integration/test_runner.py::test_duplicates_and_redelivery_apply_once), says so
in its log, and the signer signs them as the relay folded them. Real PostgreSQL and
Kafka, `crm relay` as a process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.audit_published import head_path
from tests.e2e.processes import eventually
from tests.integration.audit_support import Audited, audited, fill, positions
from tests.integration.test_relay_lock_waits import _published_positions, _relay, _stored_position

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # kafka-python's sockets
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[Audited]:
    with audited("postgres", tmp_path, pg_url) as chained:
        yield chained


def _remembered_at(store: Audited) -> int:
    path = head_path(store.key)
    return int(json.loads(path.read_text())["position"]) if path.exists() else 0


def test_a_position_moved_past_the_published_head_is_published_from_the_head(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Fails before: the events between the remembered head and the moved position never
    reached Kafka, and the signer signed them all the same."""
    fill(store.app)
    relay = _relay(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    try:
        published = positions(store)[-1]
        eventually(lambda: _stored_position(store) >= published, within=120, what="the relay")
        eventually(lambda: _remembered_at(store) == published, what="the head kept")
    finally:
        relay.terminate()
        relay.wait(timeout=60)
    fill(store.app)  # stored while the relay is down
    moved = positions(store)[-1]
    store.sql("UPDATE crm_relay_position SET position = ?", moved)  # the intruder
    again = tmp_path / "relay-again.log"
    relay = _relay(store, kafka_bootstrap, topic_prefix, again)
    try:
        eventually(lambda: _stored_position(store) >= moved, within=120, what="the relay")
        eventually(lambda: _remembered_at(store) == moved, what="the head kept")
        signed = eventually(
            lambda: (c := store.log.latest_checkpoint()) and c[0].position == moved,
            within=60,
            what="a checkpoint at the moved position",
        )
        assert signed
    finally:
        relay.terminate()
        relay.wait(timeout=60)
    assert _published_positions(kafka_bootstrap, topic_prefix) == set(positions(store))
    warned = [
        json.loads(line)
        for line in again.read_text().splitlines()
        if "relay position past its published head" in line
    ]
    assert len(warned) == 1
    assert (warned[0]["stored"], warned[0]["published"]) == (moved, published)
    assert store.verify().broken is None
