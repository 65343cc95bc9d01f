"""The runner opens only a projection's `personal_inputs`, and that changes no row."""

from __future__ import annotations

import pytest

from bench.workload import Workload
from consumers.hand_over import decode
from consumers.kafka_io import Record
from consumers.keyring import PREFIX, Keyring
from consumers.projecting import Item, project
from projections import PROJECTIONS
from projections.base import every_personal_field
from tests.unit.consumers.published import published
from tests.unit.projections.memory import MemorySession

EVENTS = list(Workload(seed=11).events(3000))


@pytest.fixture(scope="module")
def sealed() -> tuple[list[Record], Keyring]:
    return published(EVENTS)


def _replay(name: str, items: list[Item]) -> MemorySession:
    session = MemorySession(PROJECTIONS[name])
    for start in range(0, len(items), 1000):
        project(session, PROJECTIONS[name], items[start : start + 1000])
    return session


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_opening_only_the_personal_inputs_gives_the_same_rows(
    name: str, sealed: tuple[list[Record], Keyring]
) -> None:
    records, keyring = sealed
    inputs = PROJECTIONS[name].personal_inputs
    everything = _replay(name, decode(records, keyring, every_personal_field()))
    assert _replay(name, decode(records, keyring, inputs)).tables == everything.tables
    cells = [v for rows in everything.tables.values() for r in rows.values() for v in r.values()]
    assert not [v for v in cells if isinstance(v, str) and v.startswith(PREFIX)]


def test_fields_outside_the_inputs_stay_sealed(sealed: tuple[list[Record], Keyring]) -> None:
    records, keyring = sealed
    items = decode(records, keyring, frozenset({"email"}))
    registered = next(i.event for i in items if type(i.event).__name__ == "CustomerRegistered")
    assert not str(getattr(registered, "email", "")).startswith(PREFIX)
    assert str(getattr(registered, "name", "")).startswith(PREFIX)
