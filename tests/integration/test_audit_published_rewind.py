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
from typing import Any

import pytest

from services.audit_published import head_path
from services.signer_memory import record_path
from tests.e2e.processes import eventually
from tests.integration.audit_support import Audited, audited, fill, positions
from tests.integration.relay_processes import published_positions, start_relay, stored_position

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


def _signed_at(store: Audited) -> int:
    """The position of the checkpoint the signer signed last, as its record says."""
    path = record_path(store.key)
    return int(json.loads(path.read_text())["checkpoint"]["position"]) if path.exists() else 0


def _published_once(store: Audited, bootstrap: str, prefix: str, log: Path) -> int:
    """Events stored, published by a first `crm relay` and signed up to; its last position."""
    fill(store.app)
    relay = start_relay(store, bootstrap, prefix, log)
    try:
        published = positions(store)[-1]
        eventually(lambda: stored_position(store) >= published, within=120, what="the relay")
        eventually(lambda: _remembered_at(store) == published, what="the head kept")
        eventually(lambda: _signed_at(store) == published, within=60, what="a checkpoint")
    finally:
        relay.terminate()
        relay.wait(timeout=60)
    return published


def _republished(store: Audited, bootstrap: str, prefix: str, log: Path) -> list[Any]:
    """Run `crm relay` again until it has published and signed the store's head; the
    warnings it logged that its stored position was past what it had published."""
    head = positions(store)[-1]
    relay = start_relay(store, bootstrap, prefix, log)
    try:
        eventually(lambda: stored_position(store) >= head, within=120, what="the relay")
        eventually(lambda: _remembered_at(store) == head, what="the head kept")
        eventually(lambda: _signed_at(store) == head, within=60, what="a checkpoint at the head")
    finally:
        relay.terminate()
        relay.wait(timeout=60)
    assert published_positions(bootstrap, prefix) == set(positions(store))
    assert store.verify().broken is None
    return [
        json.loads(line)
        for line in log.read_text().splitlines()
        if "relay position past its published head" in line
    ]


def test_a_position_moved_past_the_published_head_is_published_from_the_head(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Fails before: the events between the remembered head and the moved position never
    reached Kafka, and the signer signed them all the same."""
    published = _published_once(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    fill(store.app)  # stored while the relay is down
    moved = positions(store)[-1]
    store.sql("UPDATE crm_relay_position SET position = ?", moved)  # the intruder
    warned = _republished(store, kafka_bootstrap, topic_prefix, tmp_path / "again.log")
    assert len(warned) == 1
    assert (warned[0]["stored"], warned[0]["published"]) == (moved, published)


def test_without_the_published_head_a_moved_position_is_published_from_the_last_signed(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Red team s32 (f_relay_no_published.sh): `<key>.published` moved aside, the position
    row moved forward. Fails before: the events between never reached Kafka, and the
    signer signed them all the same; the relay said nothing."""
    signed = _published_once(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    head_path(store.key).unlink()  # the intruder: the file, then the row
    store.sql("UPDATE crm_relay_position SET position = position + 3")
    fill(store.app)  # the three positions skipped are stored now
    warned = _republished(store, kafka_bootstrap, topic_prefix, tmp_path / "again.log")
    assert len(warned) == 1
    assert (warned[0]["stored"], warned[0]["published"]) == (signed + 3, signed)
    assert str(record_path(store.key)) in warned[0]["why"]
