"""Replaying event lists: batch size and duplicates never change the result."""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

import pytest

from bench.workload import Workload
from consumers.keyring import PREFIX
from consumers.projecting import Item, project
from domain import codec
from domain.base import DomainEvent
from projections import PROJECTIONS
from projections.base import Change, Rows
from projections.dispatch import DispatchProjection
from tests.unit.projections.memory import MemorySession, replay

EVENTS = list(Workload(seed=7).events(4000))


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_batch_size_does_not_change_the_rows(name: str) -> None:
    one_by_one = replay(PROJECTIONS[name], EVENTS, batch_size=1)
    big = replay(PROJECTIONS[name], EVENTS, batch_size=1500)
    assert one_by_one.tables == big.tables
    assert not big.dead
    assert any(big.tables.values())


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_duplicates_are_skipped(name: str) -> None:
    projection = PROJECTIONS[name]
    session = MemorySession(projection)
    items = [Item("t", 0, i, i, b"", e) for i, e in enumerate(EVENTS)]
    redelivered = [Item("t", 0, len(items) + i, 0, b"", e) for i, e in enumerate(EVENTS[:500])]
    project(session, projection, items[:2000])
    project(session, projection, items[:2000])  # the same batch again: covered by offsets
    project(session, projection, items[2000:] + redelivered)  # relay duplicates: by version
    assert session.tables == replay(projection, EVENTS).tables


def test_a_failing_event_is_a_dead_letter_and_the_rest_applies() -> None:
    def explode(event: Any, rows: Rows) -> list[Change]:
        raise ValueError("boom")

    base = PROJECTIONS["support"]
    assert isinstance(base, DispatchProjection)
    broken = DispatchProjection("broken", 1, base.tables, dict(base.key_rules), dict(base.appliers))
    kind = type(next(e for e in EVENTS if type(e).__name__ == "TaskStarted"))
    broken.appliers[kind] = explode
    session = replay(broken, EVENTS)
    failed = [e for e in EVENTS if isinstance(e, kind)]
    assert len(session.dead) == len(failed)
    assert session.dead[0].error == "ValueError: boom"
    assert session.offsets[("t", 0)] == len(EVENTS)


class SealingCipher:
    """Seals like the keyring (`enc:v1:...`, never a newline): a projection stores the
    sealed values its events carry, and nothing opens them on the way."""

    def encrypt(self, subject: UUID, plaintext: str) -> str:
        return PREFIX + base64.urlsafe_b64encode(plaintext.encode()).decode()

    def decrypt(self, subject: UUID, sealed: str) -> str:
        raise AssertionError("a projection's events reach it sealed")


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_topic_interleaving_does_not_change_the_rows(name: str) -> None:
    """Kafka orders per aggregate only: any interleaving of the topics gives the same rows,
    also where a conversation's or task's events reach a projection after its customer's
    erasure, still sealed (the consumer opens nothing, and their key is gone)."""
    events = [codec.seal(e, SealingCipher()) for e in EVENTS]
    by_topic = [
        [e for e in events if e.aggregate_type == t] for t in ("customer", "conversation", "task")
    ]
    reference = replay(PROJECTIONS[name], events).tables
    assert replay(PROJECTIONS[name], [e for t in by_topic for e in t]).tables == reference
    assert replay(PROJECTIONS[name], [e for t in reversed(by_topic) for e in t]).tables == reference


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_no_row_keeps_a_sealed_value_of_an_erased_customer(name: str) -> None:
    """Erasure leaves none of the customer's ciphertext in a read model, whichever topic
    comes first (here customers': every erasure is applied before its customer's
    conversations and tasks)."""
    events = [codec.seal(e, SealingCipher()) for e in EVENTS]
    erased = {e.originator_id for e in events if type(e).__name__ == "CustomerErased"}
    customers_first = sorted(events, key=lambda e: e.aggregate_type != "customer")
    tables = replay(PROJECTIONS[name], customers_first).tables
    kept = [
        (spec.name, column)
        for spec in PROJECTIONS[name].tables
        for row in tables[spec.name].values()
        for column in spec.personal
        if row.get(spec.subject or "") in erased and str(row[column]).startswith(PREFIX)
    ]
    assert erased
    assert kept == []


def first(events: list[DomainEvent], name: str) -> Any:
    return next(e for e in events if type(e).__name__ == name)
