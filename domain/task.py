"""The Task aggregate: follow-up work on a customer, possibly from a conversation.

Order: events, errors, state, decisions, apply. Status moves
open -> in_progress -> completed, with cancel from open/in_progress and reopen from
completed/cancelled back to open. Who may judge the work (never its assignee) is decided
in `domain.task_judgement`; what its details accept is in `domain.task_details`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, Self
from uuid import UUID

import msgspec

from domain import fields as bound
from domain import task_judgement as judging
from domain import validation as check
from domain.base import (
    Aggregate,
    AwareDatetime,
    Context,
    DomainEvent,
    E,
    EventAppliers,
    InvalidTransition,
    ValidationFailed,
)
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task_details import PRIORITIES, Priority, description_text, given_details

Status = Literal["open", "in_progress", "completed", "cancelled"]

# --- events ---------------------------------------------------------------------------


class TaskEvent(DomainEvent, frozen=True, kw_only=True, tag=False):
    """Base of Task events (untagged: never on the wire by itself)."""

    aggregate_type: ClassVar[str] = "task"
    customer_id: UUID


class TaskCreated(TaskEvent, frozen=True, kw_only=True, tag="TaskCreated"):
    conversation_id: UUID | None = None
    title: str
    description: str | None = None
    department: str
    assignee: str | None = None
    due_at: AwareDatetime | None = None
    priority: Priority = "normal"
    personal_fields: ClassVar[tuple[str, ...]] = ("title", "description")


class TaskAssigned(TaskEvent, frozen=True, kw_only=True, tag="TaskAssigned"):
    """Version 2: `reason` became personal (free text about the customer's work)."""

    from_assignee: str | None = None
    to_assignee: str
    department: str
    reason: str | None = None
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("reason",)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Same shape: a v1 reason is plaintext, which opening passes through unchanged."""


class TaskStarted(TaskEvent, frozen=True, kw_only=True, tag="TaskStarted"):
    pass


class TaskProgressLogged(TaskEvent, frozen=True, kw_only=True, tag="TaskProgressLogged"):
    note: str
    percent: int
    personal_fields: ClassVar[tuple[str, ...]] = ("note",)


class TaskDueDateChanged(TaskEvent, frozen=True, kw_only=True, tag="TaskDueDateChanged"):
    from_due_at: AwareDatetime | None = None
    to_due_at: AwareDatetime | None = None


class TaskDetailsChanged(TaskEvent, frozen=True, kw_only=True, tag="TaskDetailsChanged"):
    """Only the changed fields are present; absent (UNSET) means unchanged."""

    title: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    personal_fields: ClassVar[tuple[str, ...]] = ("title", "description")


class TaskCompleted(TaskEvent, frozen=True, kw_only=True, tag="TaskCompleted"):
    """`on_time` is None when the task had no due time; completion time is `occurred_at`."""

    resolution: str
    on_time: bool | None = None
    personal_fields: ClassVar[tuple[str, ...]] = ("resolution",)


class TaskEvaluated(TaskEvent, frozen=True, kw_only=True, tag="TaskEvaluated"):
    score: int
    feedback: str | None = None
    evaluator: str
    assignee: str
    department: str
    personal_fields: ClassVar[tuple[str, ...]] = ("feedback",)


class TaskReopened(TaskEvent, frozen=True, kw_only=True, tag="TaskReopened"):
    """Version 2: `reason` became personal, as for `TaskAssigned`."""

    reason: str
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("reason",)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Same shape: a v1 reason is plaintext, which opening passes through unchanged."""


class TaskCancelled(TaskEvent, frozen=True, kw_only=True, tag="TaskCancelled"):
    """Version 2: `reason` became personal, as for `TaskAssigned`."""

    reason: str
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("reason",)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Same shape: a v1 reason is plaintext, which opening passes through unchanged."""


# --- state ----------------------------------------------------------------------------

_when: EventAppliers[Task] = EventAppliers()
_ACTIVE = frozenset({"open", "in_progress"})


class Task(Aggregate):
    aggregate_type: ClassVar[str] = "task"
    max_events: ClassVar[int | None] = bound.TASK_EVENTS
    personal_fields: ClassVar[tuple[str, ...]] = ("title", "description", "resolution")

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.customer_id: UUID | None = None
        self.conversation_id: UUID | None = None
        self.title = ""
        self.description: str | None = None
        self.department = ""
        self.assignee: str | None = None
        self.due_at: datetime | None = None
        self.priority: str = "normal"
        self.status: Status = "open"
        self.progress = 0
        self.created_at: datetime | None = None
        self.started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.resolution: str | None = None
        self.on_time: bool | None = None
        self.evaluation_score: int | None = None
        self.evaluated = False
        self.reassignments = 0
        self.late_due_setter: str | None = None

    # --- decisions --------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        ctx: Context,
        *,
        task_id: UUID,
        customer: Customer,
        title: str,
        description: str | None = None,
        department: str | None = None,
        assignee: str | None = None,
        due_at: datetime | None = None,
        priority: str = "normal",
        conversation: Conversation | None = None,
    ) -> Self:
        """A new task; archived or erased customers take no new work. A task from a
        `conversation` is of the conversation's customer."""
        customer.require_open_for_work()
        if conversation is not None and conversation.customer_id != customer.id:
            raise ValidationFailed(
                "conversation_id",
                f"conversation {conversation.id} is not with customer {customer.id}",
            )
        task = cls(task_id)
        task._trigger(
            TaskCreated,
            ctx,
            customer_id=customer.id,
            conversation_id=None if conversation is None else conversation.id,
            title=check.text(title, "title"),
            description=description_text(description),
            department=check.department(department or ctx.actor_department),
            assignee=check.optional_person(assignee, "assignee"),
            due_at=None if due_at is None else check.aware(due_at, "due_at"),
            priority=check.one_of(priority, PRIORITIES, "priority"),
        )
        return task

    def assign(
        self,
        ctx: Context,
        *,
        assignee: str,
        reason: str | None = None,
        department: str | None = None,
    ) -> None:
        """(Re)assign, optionally to another department; same person and place is a no-op."""
        self._require_status(_ACTIVE, "assign")
        to_assignee = check.person(assignee, "assignee")
        to_department = check.department(department or self.department)
        if (to_assignee, to_department) == (self.assignee, self.department):
            return
        judging.require_not_late_due_setter(to_assignee, self.late_due_setter)
        self._trigger(
            TaskAssigned,
            ctx,
            from_assignee=self.assignee,
            to_assignee=to_assignee,
            department=to_department,
            reason=check.optional_text(reason, "reason"),
        )

    def start(self, ctx: Context) -> None:
        """Only an assigned open task can start: completions must credit someone."""
        self._require_status({"open"}, "start")
        if self.assignee is None:
            raise InvalidTransition(f"task {self.id} has no assignee yet")
        self._trigger(TaskStarted, ctx)

    def log_progress(self, ctx: Context, *, note: str, percent: int) -> None:
        self._require_status({"in_progress"}, "log progress on")
        self._trigger(
            TaskProgressLogged,
            ctx,
            note=check.text(note, "note", bound.DOCUMENT, multiline=True),
            percent=check.score(percent, 0, 100, "percent"),
        )

    def change_due(self, ctx: Context, due_at: datetime | None) -> None:
        """Anyone may move a due time before it passes (a deadline renegotiated); after,
        moving it changes the on-time verdict of a late task, which is not its assignee's."""
        self._require_status(_ACTIVE, "change the due time of")
        to_due = None if due_at is None else check.aware(due_at, "due_at")
        if to_due == self.due_at:
            return
        if judging.passed(self.due_at, ctx.occurred_at):
            self._require_not_assignee(ctx, "move a due time that has passed")
        self._trigger(TaskDueDateChanged, ctx, from_due_at=self.due_at, to_due_at=to_due)

    def change_details(
        self,
        ctx: Context,
        *,
        title: str | msgspec.UnsetType = msgspec.UNSET,
        description: str | msgspec.UnsetType | None = msgspec.UNSET,
        priority: str | msgspec.UnsetType = msgspec.UNSET,
    ) -> None:
        """Record only the details that really change (for PATCH)."""
        self._require_status(_ACTIVE, "change")
        given = given_details(title, description, priority)
        changed = {k: v for k, v in given.items() if getattr(self, k) != v}
        if changed:
            self._trigger(TaskDetailsChanged, ctx, **changed)

    def complete(self, ctx: Context, *, resolution: str) -> None:
        self._require_status({"in_progress"}, "complete")
        self._trigger(
            TaskCompleted,
            ctx,
            resolution=check.text(resolution, "resolution", bound.DOCUMENT, multiline=True),
            on_time=judging.on_time(self.due_at, ctx.occurred_at),
        )

    def evaluate(self, ctx: Context, *, score: int, feedback: str | None = None) -> None:
        """Once per completion, by anyone but the assignee, who is credited: anyone whose
        name is not the assignee's however it is spelled (`validation.same_person`)."""
        self._require_status({"completed"}, "evaluate")
        if self.evaluated:
            raise InvalidTransition(f"task {self.id} was already evaluated")
        self._require_not_assignee(ctx, "evaluate their own task")
        self._trigger(
            TaskEvaluated,
            ctx,
            score=check.score(score, 1, 5),
            feedback=check.optional_text(feedback, "feedback", bound.DOCUMENT, multiline=True),
            evaluator=ctx.actor,
            assignee=self.assignee,
            department=self.department,
        )

    def reopen(self, ctx: Context, *, reason: str) -> None:
        """Reopening takes back what the completion counted (`projections.stats`): not
        for the assignee once it judges them, evaluated or late."""
        self._require_status({"completed", "cancelled"}, "reopen")
        if self.status == "completed" and (self.evaluated or self.on_time is False):
            self._require_not_assignee(ctx, "reopen a completion that was evaluated or late")
        self._trigger(TaskReopened, ctx, reason=check.text(reason, "reason"))

    def cancel(self, ctx: Context, *, reason: str) -> None:
        self._require_status(_ACTIVE, "cancel")
        self._trigger(TaskCancelled, ctx, reason=check.text(reason, "reason"))

    def _require_status(self, allowed: frozenset[str] | set[str], action: str) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"cannot {action} a task that is {self.status}")

    def _require_not_assignee(self, ctx: Context, action: str) -> None:
        judging.require_not_assignee(ctx.actor, self.assignee, action)

    def _trigger(self, event_class: type[E], ctx: Context, **fields: Any) -> E:
        """Every task event names the customer, the data subject of its free text."""
        fields.setdefault("customer_id", self.customer_id)
        return super()._trigger(event_class, ctx, **fields)

    # --- apply ------------------------------------------------------------------------

    def apply(self, event: DomainEvent) -> None:
        _when.apply(self, event)

    @_when(TaskCreated)
    def _created(self, e: TaskCreated) -> None:
        self.customer_id, self.conversation_id = e.customer_id, e.conversation_id
        self.title, self.description, self.priority = e.title, e.description, e.priority
        self.department, self.assignee, self.due_at = e.department, e.assignee, e.due_at
        self.created_at = e.occurred_at

    @_when(TaskAssigned)
    def _assigned(self, e: TaskAssigned) -> None:
        if e.from_assignee is not None:
            self.reassignments += 1
        self.assignee, self.department = e.to_assignee, e.department

    @_when(TaskStarted)
    def _started(self, e: TaskStarted) -> None:
        self.status, self.started_at = "in_progress", e.occurred_at

    @_when(TaskProgressLogged)
    def _progress_logged(self, e: TaskProgressLogged) -> None:
        self.progress = e.percent

    @_when(TaskDueDateChanged)
    def _due_changed(self, e: TaskDueDateChanged) -> None:
        """Remembers who set a due time over a passed one, until someone else sets it."""
        if judging.passed(e.from_due_at, e.occurred_at):
            self.late_due_setter = e.actor
        elif e.actor != self.late_due_setter:
            self.late_due_setter = None
        self.due_at = e.to_due_at

    @_when(TaskDetailsChanged)
    def _details_changed(self, e: TaskDetailsChanged) -> None:
        for name in ("title", "description", "priority"):
            value = getattr(e, name)
            if value is not msgspec.UNSET:
                setattr(self, name, value)

    @_when(TaskCompleted)
    def _completed(self, e: TaskCompleted) -> None:
        """A completed task is done: its progress is 100, whatever was logged before
        (the task board says the same). Reopening keeps it until progress is logged."""
        self.status, self.completed_at, self.progress = "completed", e.occurred_at, 100
        self.resolution, self.on_time, self.evaluated = e.resolution, e.on_time, False

    @_when(TaskEvaluated)
    def _evaluated(self, e: TaskEvaluated) -> None:
        self.evaluation_score, self.evaluated = e.score, True

    @_when(TaskReopened)
    def _reopened(self, e: TaskReopened) -> None:
        self.status, self.completed_at, self.resolution, self.on_time = "open", None, None, None

    @_when(TaskCancelled)
    def _cancelled(self, e: TaskCancelled) -> None:
        self.status = "cancelled"
