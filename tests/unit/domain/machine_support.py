"""Shared plumbing for the aggregates' Hypothesis state machines.

Each machine drives one aggregate with random commands and a plain-dict model of what
should happen. After every step the aggregate must match the model, and replaying its
encoded history (codec round trip, then `mutate` from None) must give an equal state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant

from domain.base import Aggregate, Context, DomainError, DomainEvent
from domain.snapshot import restored, snapshot
from tests.unit.domain.factories import ctx, exactly, replay

MACHINE_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class AggregateMachine(RuleBasedStateMachine):
    """Keeps the emitted history and checks the replay invariant after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[DomainEvent] = []
        self.minute = 0

    def subject(self) -> Aggregate:  # pragma: no cover - overridden
        raise NotImplementedError

    def next_ctx(self, actor: str = "agent-1", department: str = "sales") -> Context:
        """Time moves forward one minute per command, as it does in the real system."""
        self.minute += 1
        return ctx(actor=actor, department=department, minutes=self.minute)

    def run(self, error: type[DomainError] | None, command: Callable[[], object]) -> None:
        """Run `command`; it must raise exactly `error` (then emit nothing) or succeed."""
        if error is None:
            command()
        else:
            with pytest.raises(error):
                command()
        self.history.extend(self.subject().collect_events())

    @invariant()
    def versions_count_the_events(self) -> None:
        assert self.subject().version == len(self.history)

    @invariant()
    def replaying_the_encoded_history_gives_the_same_state(self) -> None:
        assert replay(self.history) == self.subject()

    @invariant()
    def a_snapshot_and_the_events_after_it_give_the_same_state(self) -> None:
        """From a snapshot taken halfway (`domain.snapshot`), the later events give
        exactly the state the whole history gives: what a read of a long history
        relies on."""
        half = max(1, len(self.history) // 2)  # the creating event, at least
        halfway = replay(self.history[:half])
        assert halfway is not None
        state: Aggregate = restored(type(halfway), snapshot(halfway))
        for event in self.history[half:]:
            state = event.mutate(state)
        assert exactly(state) == exactly(self.subject())


def later(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)
