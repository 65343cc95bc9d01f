"""`Aggregate.clone`: a copy that the original's later events leave alone (the command
service keeps one as a spare while another process races it for the same aggregate)."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from bench.workload import Workload
from domain.base import Aggregate, DomainEvent

EVENTS = list(Workload(seed=5).events(3000))


def rebuilt(events: list[DomainEvent]) -> Aggregate:
    aggregate: Aggregate | None = None
    for event in events:
        aggregate = event.mutate(aggregate)
    assert aggregate is not None
    return aggregate


def test_a_clone_keeps_the_state_it_was_taken_at_while_the_original_moves_on() -> None:
    streams: dict[UUID, list[DomainEvent]] = defaultdict(list)
    for event in EVENTS:
        streams[event.originator_id].append(event)
    kinds: set[str] = set()
    for events in streams.values():
        original: Aggregate | None = None
        clones: list[tuple[int, Aggregate]] = []
        for count, event in enumerate(events, start=1):
            original = event.mutate(original)
            assert original is not None
            clones.append((count, original.clone()))
        for count, clone in clones:
            assert clone == rebuilt(events[:count]), (type(clone).__name__, count)
            assert clone.version == count
        kinds.add(type(original).__name__)
    assert kinds == {"Customer", "Conversation", "Task"}
    assert max(len(events) for events in streams.values()) > 10  # long enough to matter
