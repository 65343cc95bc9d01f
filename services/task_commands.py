"""Task use cases: one command class each, with its policy action and its decision.

A command naming an assignee (`CreateTask`, `AssignTask`) is an assignment: the access
model asks for `task.assign_self` when the caller names themselves, else `task.assign`.
I/O: none (`CommandService` loads, authorises and saves).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain import fields as f
from domain.base import Aggregate, Context
from domain.task import Task
from services.access.rules import Principal
from services.command_base import Change, Creation, Existing
from services.sealed_state import Path

WRITE = "task.write"


class CreateTask(Creation, frozen=True, kw_only=True):
    """A task in the caller's department unless another is named."""

    action: ClassVar[str] = WRITE
    assignee_field: ClassVar[str | None] = "assignee"
    department_fields: ClassVar[tuple[str, ...]] = ("department",)
    customer_id: UUID
    title: f.Line
    description: f.Document | None = None
    department: f.Code | None = None
    assignee: f.PersonName | None = None
    due_at: f.Instant | None = None
    priority: f.Code = "normal"
    conversation_id: UUID | None = None

    def belongs_to(self) -> UUID:
        return self.customer_id

    def with_defaults(self, principal: Principal) -> Self:
        if self.department is not None:
            return self
        return msgspec.structs.replace(self, department=principal.department)

    def from_conversation(self) -> UUID | None:
        return self.conversation_id

    def create(self, ctx: Context, new_id: UUID, existing: Existing) -> Aggregate:
        customer, conversation = existing
        assert customer is not None, "a task needs its customer"
        fields: dict[str, Any] = self.fields()
        del fields["customer_id"], fields["conversation_id"]
        return Task.create(
            ctx, task_id=new_id, customer=customer, conversation=conversation, **fields
        )


class TaskChange(Change[Task], frozen=True, kw_only=True):
    action: ClassVar[str] = WRITE

    @classmethod
    def aggregate_class(cls) -> type[Task]:
        return Task


class ChangeTask(TaskChange, frozen=True, kw_only=True):
    """Title, description, priority and/or the due time, in one batch of events."""

    title: f.Line | UnsetType = UNSET
    description: f.Document | UnsetType | None = UNSET
    priority: f.Code | UnsetType = UNSET
    due_at: f.Instant | UnsetType | None = UNSET

    def decide(self, aggregate: Task, ctx: Context) -> None:
        details = self.fields()
        due_at = details.pop("due_at", UNSET)
        aggregate.change_details(ctx, **details)
        if due_at is not UNSET:
            aggregate.change_due(ctx, due_at)

    def compares(self) -> tuple[Path, ...]:
        """Those of its personal fields given: a value equal to the current one changes
        nothing."""
        return tuple((f,) for f in Task.personal_fields if getattr(self, f, UNSET) is not UNSET)


class AssignTask(TaskChange, frozen=True, kw_only=True):
    """(Re)assign, optionally to another department: agents take tasks themselves,
    managers assign anyone."""

    assignee_field: ClassVar[str | None] = "assignee"
    department_fields: ClassVar[tuple[str, ...]] = ("department",)
    assignee: f.PersonName
    reason: f.Line | None = None
    department: f.Code | None = None

    def decide(self, aggregate: Task, ctx: Context) -> None:
        aggregate.assign(ctx, **self.fields())


class StartTask(TaskChange, frozen=True, kw_only=True):
    def decide(self, aggregate: Task, ctx: Context) -> None:
        aggregate.start(ctx)


class LogProgress(TaskChange, frozen=True, kw_only=True):
    note: f.Document
    percent: f.Percent

    def decide(self, aggregate: Task, ctx: Context) -> None:
        aggregate.log_progress(ctx, note=self.note, percent=self.percent)


class CompleteTask(TaskChange, frozen=True, kw_only=True):
    resolution: f.Document

    def decide(self, aggregate: Task, ctx: Context) -> None:
        aggregate.complete(ctx, resolution=self.resolution)


class EvaluateTask(TaskChange, frozen=True, kw_only=True):
    """Score 1-5 and feedback, by someone other than the assignee."""

    action: ClassVar[str] = "task.evaluate"
    score: f.Score
    feedback: f.Document | None = None

    def decide(self, aggregate: Task, ctx: Context) -> None:
        aggregate.evaluate(ctx, score=self.score, feedback=self.feedback)


class ReopenTask(TaskChange, frozen=True, kw_only=True):
    reason: f.Line

    def decide(self, aggregate: Task, ctx: Context) -> None:
        aggregate.reopen(ctx, reason=self.reason)


class CancelTask(TaskChange, frozen=True, kw_only=True):
    reason: f.Line

    def decide(self, aggregate: Task, ctx: Context) -> None:
        aggregate.cancel(ctx, reason=self.reason)
