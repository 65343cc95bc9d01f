"""The read-model <-> domain oracle on the in-memory session: for random command
sequences (extreme values included), every row mirroring an aggregate says what the
aggregate's state says. Both stores: `tests/integration/test_accepted_means_projectable`."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings

from domain.base import DomainEvent
from projections import PROJECTIONS
from tests.unit.projections.memory import replay
from tests.unit.projections.oracle import mismatches
from tests.unit.projections.world import FIRST, Step, World, steps


def rows_of(events: list[DomainEvent]) -> dict[tuple[str, str], list[dict[str, object]]]:
    return {
        (name, table): session.sorted_rows(table)
        for name, projection in PROJECTIONS.items()
        for session in [replay(projection, events)]
        for table in session.tables
    }


TASK: dict[str, object] = {
    "title": "t",
    "description": None,
    "department": None,
    "assignee": None,
    "due_at": None,
    "priority": "normal",
    "conversation": False,
}
REFUSED_LAST: list[Step] = [
    FIRST,
    ("create", 0, TASK),
    ("work", 0, {"percent": 5, "resolution": " "}),
]
"""A composite step whose last command is refused (a blank resolution) after its first
ones changed the task: their events are the world's too (found by Hypothesis)."""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps())
@example(REFUSED_LAST)
def test_read_model_rows_equal_the_aggregates_state(plan: list[Step]) -> None:
    world = World()
    rows = rows_of(world.play(plan))
    assert mismatches(world, lambda name, table: rows[(name, table)]) == []
