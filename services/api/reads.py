"""Reads: aggregate state straight from the event store (always current), history and
as-of for auditors, and the read models (department views, timeline, statistics), which
wait for `?min_position=N` on exactly the projections they read.

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
from services.api.read_models import READS, Page, ReadModels
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

    def timeline(self, customer_id: UUID, min_position: int | None, **page: Any) -> Page:
        customer = self.services.app.load(Customer, customer_id)
        authorize(self.principal, "timeline.read", customer.departments)
        models = self._caught_up("timeline", min_position)
        return self._masked_page(models.timeline(customer_id, **page))

    def department(
        self, view: str, department: str, min_position: int | None, **filters: Any
    ) -> Page:
        """A page of one department's customers, conversations or tasks."""
        authorize(self.principal, "department.read", (department,))
        models = self._caught_up(view, min_position)
        if view == "customers":
            return self._masked_page(models.customers(department, **filters), consent=True)
        if view == "conversations":
            return self._masked_page(models.conversations(department, **filters))
        return self._masked_page(models.tasks(department, **filters))

    def stats(
        self, name: str, department: str | None, min_position: int | None, **filters: Any
    ) -> Any:
        authorize(self.principal, "stats.read", () if department is None else (department,))
        models = self._caught_up(name, min_position)
        if name == "satisfaction":
            return mask(self.principal, models.satisfaction(department=department, **filters))
        return mask(self.principal, models.task_stats(department=department, **filters))

    def _caught_up(self, query: str, min_position: int | None) -> ReadModels:
        """The read models, once the projections `query` reads have applied `min_position`."""
        models, applied = self.services.queries, self.services.applied_position
        if models is None or applied is None:
            raise ReadModelUnavailable(f"read model not available in this process ({query})")
        names = READS[query]
        self.services.wait_for(min_position, lambda: applied(names))
        return models

    def _masked_page(self, page: Page, *, consent: bool = False) -> Page:
        """Each row masked by the policy; `consent`: rows carry `email_marketing`."""
        principal = self.principal
        items = [
            mask(principal, row, email_consent=consent and bool(row.get("email_marketing")))
            for row in page["items"]
        ]
        return page | {"items": items}


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise BadRequest("as_of must be an RFC 3339 time with a zone, e.g. 2025-01-31T12:00:00Z")
    return instant


def reader(services: ServicesDep, caller: CallerDep) -> Reader:
    return Reader(services, caller)


ReaderDep = NamedDependency[Reader]
