"""Reads: aggregate state straight from the event store (always current), history and
as-of for auditors, and the read models (department views, timeline, statistics), which
wait for `?min_position=N` on exactly the projections they read.

Every read asks the one access model (`services.access`): whether the caller may see
what it is about to return (an aggregate they may not read is a 404, like an unknown
id), and which personal fields to mask. Read-model rows are judged one by one, each by
the aggregate it shows, at the read model's position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from litestar.di import NamedDependency

from domain.base import Aggregate
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from services.access import AccessModel, Principal, Resource, mask, resource_of
from services.api.deps import CallerDep, Services, ServicesDep
from services.api.errors import BadRequest, ReadModelUnavailable
from services.api.read_models import PERSONAL, READS, Page, ReadModels, Row
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
from services.commands import Caller

A = TypeVar("A", bound=Aggregate)


@dataclass
class Reader:
    services: Services
    caller: Caller

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    @property
    def access(self) -> AccessModel:
        return self.services.access

    def customer(
        self, customer_id: UUID, as_of: datetime | None, min_position: int | None
    ) -> CustomerView:
        """Current state, or (auditors) the state at `as_of`, of a customer they may read."""
        customer = self._current(Customer, customer_id, min_position)
        fields = self.access.read(self.principal, resource_of(customer), "as_of.read" * bool(as_of))
        if as_of is not None:
            customer = self.services.app.as_of(Customer, customer_id, _aware(as_of))
        return customer_view(customer, fields)

    def conversation(self, conversation_id: UUID, min_position: int | None) -> ConversationView:
        conversation = self._current(Conversation, conversation_id, min_position)
        return conversation_view(conversation, self._fields(conversation))

    def task(self, task_id: UUID, min_position: int | None) -> TaskView:
        task = self._current(Task, task_id, min_position)
        return task_view(task, self._fields(task))

    def history(self, kind: type[A], aggregate_id: UUID) -> list[HistoryEntry]:
        """Every event of one aggregate with its metadata (auditors; managers: own)."""
        fields = self._fields(self.services.app.load(kind, aggregate_id), "history.read")
        return [history_entry(event, fields) for event in self.services.app.history(aggregate_id)]

    def _fields(self, aggregate: Aggregate, action: str = "") -> Any:
        return self.access.read(self.principal, resource_of(aggregate), action)

    def _current(self, kind: type[A], aggregate_id: UUID, min_position: int | None) -> A:
        app = self.services.app
        self.services.wait_for(min_position, app.head_position)
        return app.load(kind, aggregate_id)

    # --- read models (projections) ----------------------------------------------------

    def timeline(self, customer_id: UUID, min_position: int | None, **page: Any) -> Page:
        """A customer's timeline; each entry only if its own conversation or task is
        readable by the caller (the read model's `department` of it)."""
        customer = self.services.app.load(Customer, customer_id)
        self.access.read(self.principal, resource_of(customer), "timeline.read")
        models = self._caught_up("timeline", min_position)
        department = self.access.entry_department(self.principal)
        rows = models.timeline(customer_id, department=department, **page)
        return self._judged(rows, "timeline", _entry_resource)

    def department(
        self, view: str, department: str, min_position: int | None, **filters: Any
    ) -> Page:
        """A page of one department's customers, conversations or tasks."""
        self.access.department_scope(self.principal, "department.read", department)
        models = self._caught_up(view, min_position)
        if view == "customers":
            return self._judged(models.customers(department, **filters), view, _customer_resource)
        if view == "conversations":
            page = models.conversations(department, **filters)
            return self._judged(page, view, _work_resource("conversation"))
        return self._judged(models.tasks(department, **filters), view, _work_resource("task"))

    def stats(
        self, name: str, department: str | None, min_position: int | None, **filters: Any
    ) -> Any:
        """Statistics of one department (department-scoped roles: their own) or all."""
        scope = self.access.department_scope(self.principal, "stats.read", department)
        models = self._caught_up(name, min_position)
        if name == "satisfaction":
            return models.satisfaction(department=scope, **filters)
        return models.task_stats(department=scope, **filters)

    def _caught_up(self, query: str, min_position: int | None) -> ReadModels:
        """The read models, once the projections `query` reads have applied `min_position`."""
        models, applied = self.services.queries, self.services.applied_position
        if models is None or applied is None:
            raise ReadModelUnavailable(f"read model not available in this process ({query})")
        names = READS[query]
        self.services.wait_for(min_position, lambda: applied(names))
        return models

    def _judged(self, page: Page, query: str, resource: Callable[[Row], Resource]) -> Page:
        """The page's rows the caller may read, each masked by the access model."""
        principal, personal = self.principal, PERSONAL[query]
        items = []
        for row in page["items"]:
            seen = resource(row)
            if self.access.readable(principal, seen):
                items.append(mask(row, personal, self.access.fields(principal, seen)))
        return page | {"items": items}


def _customer_resource(row: Row) -> Resource:
    departments = row["departments"]
    return Resource(
        kind="customer",
        id=_uuid(row["customer_id"]),
        owner=row["owner_department"],
        departments=frozenset(departments.split(",") if isinstance(departments, str) else ()),
        email_consent=bool(row.get("email_marketing")),
    )


def _work_resource(kind: str) -> Callable[[Row], Resource]:
    key = f"{kind}_id"

    def resource(row: Row) -> Resource:
        department = row["department"]
        return Resource(
            kind=kind, id=_uuid(row[key]), owner=department, departments=frozenset((department,))
        )

    return resource


def _entry_resource(row: Row) -> Resource:
    department = row.get("department") or ""
    return Resource(
        kind=row["aggregate_type"],
        id=_uuid(row["aggregate_id"]),
        owner=department,
        departments=frozenset((department,)),
    )


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise BadRequest("as_of must be an RFC 3339 time with a zone, e.g. 2025-01-31T12:00:00Z")
    return instant


def reader(services: ServicesDep, caller: CallerDep) -> Reader:
    return Reader(services, caller)


ReaderDep = NamedDependency[Reader]
