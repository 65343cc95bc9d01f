"""Replaying event lists: batch size and duplicates never change the result."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from bench.workload import Workload
from consumers.projecting import Item, project
from domain import codec
from domain.base import ERASED, DomainEvent
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


class ErasingCipher:
    """Opens personal fields like the keyring on replay: erased subjects read ERASED."""

    def __init__(self, erased: set[UUID]) -> None:
        self.erased = erased

    def encrypt(self, subject: UUID, plaintext: str) -> str:
        return plaintext

    def decrypt(self, subject: UUID, sealed: str) -> str:
        return ERASED if subject in self.erased else sealed


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_topic_interleaving_does_not_change_the_rows(name: str) -> None:
    """Kafka orders per aggregate only: any interleaving of the topics gives the same rows."""
    erased = {e.originator_id for e in EVENTS if type(e).__name__ == "CustomerErased"}
    events = [codec.unseal(e, ErasingCipher(erased)) for e in EVENTS]
    by_topic = [
        [e for e in events if e.aggregate_type == t] for t in ("customer", "conversation", "task")
    ]
    reference = replay(PROJECTIONS[name], events).tables
    assert replay(PROJECTIONS[name], [e for t in by_topic for e in t]).tables == reference
    assert replay(PROJECTIONS[name], [e for t in reversed(by_topic) for e in t]).tables == reference


def first(events: list[DomainEvent], name: str) -> Any:
    return next(e for e in events if type(e).__name__ == name)
