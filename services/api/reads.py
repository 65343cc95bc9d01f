"""Reads: aggregate state straight from the event store (always current), history and
as-of for auditors, and the read-model queries once the projections are wired.

Each read is authorised by `services.policy` against the departments of what it
returns, and masked by `views` on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from litestar.di import NamedDependency

from domain.base import Aggregate
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from services.api.deps import CallerDep, Services, ServicesDep
from services.api.errors import BadRequest, ReadModelUnavailable
from services.api.views import (
    ConversationView,
    CustomerView,
    HistoryEntry,
    TaskView,
    conversation_view,
    customer_view,
    history_entry,
    task_view,
)
from services.commands import Caller, departments_of
from services.policy import Principal, authorize, mask

A = TypeVar("A", bound=Aggregate)


@dataclass
class Reader:
    services: Services
    caller: Caller

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    def customer(
        self, customer_id: UUID, as_of: datetime | None, min_position: int | None
    ) -> CustomerView:
        if as_of is None:
            customer = self._current(Customer, customer_id, min_position)
        else:
            authorize(self.principal, "as_of.read")
            customer = self.services.app.as_of(Customer, customer_id, _aware(as_of))
        authorize(self.principal, "customer.read", customer.departments)
        return customer_view(self.principal, customer)

    def conversation(self, conversation_id: UUID, min_position: int | None) -> ConversationView:
        conversation = self._current(Conversation, conversation_id, min_position)
        authorize(self.principal, "conversation.read", departments_of(conversation))
        return conversation_view(self.principal, conversation)

    def task(self, task_id: UUID, min_position: int | None) -> TaskView:
        task = self._current(Task, task_id, min_position)
        authorize(self.principal, "task.read", departments_of(task))
        return task_view(self.principal, task)

    def history(self, kind: type[A], aggregate_id: UUID) -> list[HistoryEntry]:
        """Every event of one aggregate with its metadata (auditors; managers: own)."""
        current = self.services.app.load(kind, aggregate_id)
        authorize(self.principal, "history.read", departments_of(current))
        events = self.services.app.history(aggregate_id)
        return [history_entry(self.principal, event) for event in events]

    def _current(self, kind: type[A], aggregate_id: UUID, min_position: int | None) -> A:
        app = self.services.app
        self.services.wait_for(min_position, app.head_position)
        return app.load(kind, aggregate_id)

    # --- read models (projections) ----------------------------------------------------

    def timeline(self, customer_id: UUID, min_position: int | None) -> Any:
        customer = self.services.app.load(Customer, customer_id)
        authorize(self.principal, "timeline.read", customer.departments)
        return self.query("timeline", min_position, customer_id=customer_id)

    def department(
        self, view: str, department: str, min_position: int | None, **filters: Any
    ) -> Any:
        authorize(self.principal, "department.read", (department,))
        return self.query(f"department_{view}", min_position, department=department, **filters)

    def stats(
        self, name: str, department: str | None, min_position: int | None, **filters: Any
    ) -> Any:
        authorize(self.principal, "stats.read", () if department is None else (department,))
        return self.query(f"{name}_stats", min_position, department=department, **filters)

    def query(self, name: str, min_position: int | None, **arguments: Any) -> Any:
        """Call the projections' query helper `name`, after waiting for `min_position`."""
        queries = self.services.queries
        helper = getattr(queries, name, None)
        if helper is None or self.services.applied_position is None:
            raise ReadModelUnavailable(f"read model not available yet ({name})")
        self.services.wait_for(min_position, self.services.applied_position)
        return mask(self.principal, helper(**arguments))


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise BadRequest("as_of must be an RFC 3339 time with a zone, e.g. 2025-01-31T12:00:00Z")
    return instant


def reader(services: ServicesDep, caller: CallerDep) -> Reader:
    return Reader(services, caller)


ReaderDep = NamedDependency[Reader]
