"""The read-model <-> domain oracle on the in-memory session: for random command
sequences (extreme values included), every row mirroring an aggregate says what the
aggregate's state says. Both stores: `tests/integration/test_accepted_means_projectable`."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, example, given, settings

from domain.base import DomainEvent
from projections import PROJECTIONS
from tests.unit.projections.memory import replay
from tests.unit.projections.oracle import mismatches, stats_mismatches
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
DUE = {**TASK, "assignee": "ann", "due_at": datetime(2099, 1, 1, tzinfo=UTC)}
DONE: dict[str, object] = {"percent": 5, "resolution": "ok"}
WHY: dict[str, object] = {"reason": "r"}
AGAIN: dict[str, object] = {**WHY, "score": 4, "cancel": False, **DONE}
REDONE: list[Step] = [
    FIRST, ("create", 0, DUE), ("work", 0, DONE), ("create", 0, TASK), ("work", 1, DONE),
    ("evaluate", 0, {"score": 5}), *[("rework", 0, AGAIN)] * 3, ("evaluate", 0, {"score": 2}),
    ("reopen_task", 1, WHY), ("cancel", 1, WHY), ("reopen_task", 1, WHY), ("cancel", 1, WHY),
]  # fmt: skip
"""The red team's story: a task done and evaluated, reopened and done again three times
(evaluated in between and at the end), and one cancelled twice; stats counted every
completion, evaluation and cancellation."""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps())
@example(REFUSED_LAST)
@example(REDONE)
def test_read_model_rows_equal_the_aggregates_state(plan: list[Step]) -> None:
    world = World()
    rows = rows_of(world.play(plan))
    assert mismatches(world, lambda name, table: rows[(name, table)]) == []
    assert stats_mismatches(world, lambda name, table: rows[(name, table)]) == []
