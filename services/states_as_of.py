"""Aggregates as of each event passing by, and as they are now: what the paths showing
the past (the event stream, history) judge an event by (`AccessModel.past_event`,
`AccessModel.past_fields`).

I/O: the event store, through `CrmApplication.sealed_load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from domain.base import AGGREGATE_CLASSES, Aggregate, DomainEvent
from services.access.resources import Resource, resource_of
from services.event_store import CrmApplication
from services.held import Budget, SharedHeld

STATES_BYTES = 32 * 2**20
"""The most a reader's states hold, by their own estimate (`Aggregate.held_bytes`), when
it shares no `Budget` with others (a `/history` answer's)."""
RESOURCE_BYTES = 512  # a `Resource`, about: its departments, an id, a few flags


@dataclass
class AggregatesAsOf:
    """Aggregates as of the last event passed, kept current by applying each passing
    event with the domain's own `mutate` (so visibility rules are never written twice);
    an aggregate seen first, or evicted, is loaded at that event's version. Their
    personal fields stay sealed: judging visibility needs none of them. At most `size`
    of them, within the bytes of `budget` (shared by the event streams of a process,
    `CRM_STREAMS_CACHE_MB`; else `STATES_BYTES` of its own): a replay through long
    conversations keeps what it may. `now` gives what an aggregate is now, loaded once
    (again if evicted). `close` gives what it holds back to the budget."""

    app: CrmApplication
    budget: Budget = field(default_factory=lambda: Budget(STATES_BYTES))
    size: int = 2_000
    _states: SharedHeld[UUID, Aggregate] = field(init=False)
    _now: SharedHeld[UUID, Resource] = field(init=False)

    def __post_init__(self) -> None:
        self._states = self.budget.share(self.size)
        self._now = self.budget.share(self.size * 10)

    def close(self) -> None:
        self._states.close()
        self._now.close()

    def after(self, event: DomainEvent) -> Aggregate:
        aggregate = self._states.pop(event.originator_id)
        if aggregate is not None and aggregate.version == event.originator_version - 1:
            event.mutate(aggregate)
        else:
            aggregate = self._load(event, event.originator_version)
        self._states.put(event.originator_id, aggregate, aggregate.held_bytes())
        return aggregate

    def now(self, event: DomainEvent) -> Resource:
        """The resource `event`'s aggregate describes now (when this reader first asked)."""
        resource = self._now.get(event.originator_id)
        if resource is None:
            resource = resource_of(self._load(event, None))
            self._now.put(event.originator_id, resource, RESOURCE_BYTES)
        return resource

    def _load(self, event: DomainEvent, version: int | None) -> Aggregate:
        kind = AGGREGATE_CLASSES[event.aggregate_type]
        return self.app.sealed_load(kind, event.originator_id, version)
