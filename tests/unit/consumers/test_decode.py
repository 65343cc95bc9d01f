"""Read models hold personal fields sealed: the runner opens nothing for projecting, and
opening the rows' personal columns gives what rows projected from opened events held."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bench.workload import Workload
from consumers.hand_over import decode
from consumers.kafka_records import Record
from consumers.keyring import PREFIX, Keyring
from consumers.projecting import Item, project
from consumers.sealed_rows import JOIN, open_rows
from domain.base import DomainEvent
from projections import PROJECTIONS
from projections.base import every_personal_field
from tests.unit.consumers.published import MemoryStoredEvents, published
from tests.unit.projections.memory import MemorySession

EVENTS = list(Workload(seed=11).events(3000))


Sealed = tuple[list[Record], Keyring, MemoryStoredEvents]


@pytest.fixture(scope="module")
def sealed() -> Sealed:
    return published(EVENTS)


def _replay(name: str, items: list[Item]) -> MemorySession:
    session = MemorySession(PROJECTIONS[name])
    for start in range(0, len(items), 1000):
        project(session, PROJECTIONS[name], items[start : start + 1000])
    return session


def _projected(name: str, sealed: Sealed, opened: bool) -> MemorySession:
    records, keyring, stored = sealed
    projection = PROJECTIONS[name]
    fields = every_personal_field() if opened else projection.personal_inputs
    return _replay(name, decode(records, keyring, stored, fields, projection.search_fields))


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_no_projection_opens_a_personal_field(name: str) -> None:
    assert PROJECTIONS[name].personal_inputs == frozenset()


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_opening_the_sealed_rows_gives_the_rows_of_opened_events(name: str, sealed: Sealed) -> None:
    keyring = sealed[1]
    stored = _projected(name, sealed, opened=False)
    opened = _projected(name, sealed, opened=True)
    wanted = [
        (row, spec.personal)
        for spec in PROJECTIONS[name].tables
        for row in stored.tables[spec.name].values()
    ]
    open_rows(keyring, wanted)
    assert stored.tables == opened.tables


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_no_personal_plaintext_reaches_a_read_model(name: str, sealed: Sealed) -> None:
    stored = _projected(name, sealed, opened=False)
    cells = {
        part
        for rows in stored.tables.values()
        for row in rows.values()
        for value in row.values()
        if isinstance(value, str)
        for part in value.split(JOIN)
    }
    assert not cells & _personal_plaintexts(EVENTS)
    assert any(cell.startswith(PREFIX) for cell in cells) or name == "stats"


def _personal_plaintexts(events: list[DomainEvent]) -> set[str]:
    """Values of personal fields that no non-personal field also holds (a staff member
    may author a message, which is personal, and a note, which is not)."""
    personal: set[str] = set()
    other: set[str] = set()
    for event in events:
        values: dict[str, Any] = msgspec.structs.asdict(event)
        for field, value in values.items():
            if isinstance(value, str):
                (personal if field in event.personal_fields else other).add(value)
    return personal - other


def test_fields_outside_the_inputs_stay_sealed(sealed: Sealed) -> None:
    records, keyring, stored = sealed
    items = decode(records, keyring, stored, frozenset({"email"}))
    registered = next(i.event for i in items if type(i.event).__name__ == "CustomerRegistered")
    assert not str(getattr(registered, "email", "")).startswith(PREFIX)
    assert str(getattr(registered, "name", "")).startswith(PREFIX)
