"""Task against a plain model of its status machine under random command sequences,
whoever acts: the assignee never judges their own work (evaluates it, reopens a completion
that was evaluated or late, moves a passed due time or takes a task whose passed due time
they moved)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from domain.base import DomainError, InvalidTransition, PermissionDenied, ValidationFailed
from domain.task import Task
from tests.unit.domain.factories import T0, TASK_ID, customer
from tests.unit.domain.machine_support import MACHINE_SETTINGS, AggregateMachine, later

people = st.sampled_from(["agent-1", "agent-2", "boss"])
ACTIVE = {"open", "in_progress"}
DUE = st.none() | st.integers(0, 40)  # minutes after T0: commands come one a minute


class TaskMachine(AggregateMachine):
    task: Task
    model: dict[str, Any]

    def subject(self) -> Task:
        return self.task

    @initialize(assignee=st.sampled_from(["agent-1", None]), minutes=DUE)
    def create(self, assignee: str | None, minutes: int | None) -> None:
        due = None if minutes is None else T0 + later(minutes)
        self.task = Task.create(
            self.next_ctx(),
            task_id=TASK_ID,
            customer=customer(),
            title="t",
            assignee=assignee,
            due_at=due,
        )
        self.history.extend(self.task.collect_events())
        self.model = {"status": "open", "assignee": assignee, "evaluated": False}
        self.model |= {"reassignments": 0, "progress": 0}
        self.model |= {"due": due, "on_time": None, "late_setter": None}

    def needs(self, *statuses: str) -> type[DomainError] | None:
        return None if self.model["status"] in statuses else InvalidTransition

    def now(self) -> datetime:
        """The time of the next command's context (`next_ctx`)."""
        return T0 + later(self.minute + 1)

    def not_by_assignee(self, who: str, judged: bool) -> type[DomainError] | None:
        return PermissionDenied if judged and who == self.model["assignee"] else None

    @rule(who=people)
    def assign(self, who: str) -> None:
        error = self.needs(*ACTIVE)
        if error is None and who != self.model["assignee"] and who == self.model["late_setter"]:
            error = PermissionDenied
        self.run(error, lambda: self.task.assign(self.next_ctx(), assignee=who))
        if error is None and who != self.model["assignee"]:
            self.model["reassignments"] += self.model["assignee"] is not None
            self.model["assignee"] = who

    @rule()
    def start(self) -> None:
        error = self.needs("open") or (None if self.model["assignee"] else InvalidTransition)
        self.run(error, lambda: self.task.start(self.next_ctx()))
        if error is None:
            self.model["status"] = "in_progress"

    @rule(percent=st.integers(-5, 105))
    def log_progress(self, percent: int) -> None:
        error = self.needs("in_progress") or (None if 0 <= percent <= 100 else ValidationFailed)
        self.run(error, lambda: self.task.log_progress(self.next_ctx(), note="n", percent=percent))
        if error is None:
            self.model["progress"] = percent

    @rule(who=people, minutes=DUE)
    def change_due(self, who: str, minutes: int | None) -> None:
        due = None if minutes is None else T0 + later(minutes)
        was = self.model["due"]
        passed = was is not None and was < self.now()
        error = self.needs(*ACTIVE) or self.not_by_assignee(who, passed and due != was)
        self.run(error, lambda: self.task.change_due(self.next_ctx(actor=who), due))
        if error is None and due != was:
            setter = self.model["late_setter"]
            self.model["late_setter"] = who if passed else (setter if who == setter else None)
            self.model["due"] = due

    @rule()
    def complete(self) -> None:
        error, due, now = self.needs("in_progress"), self.model["due"], self.now()
        self.run(error, lambda: self.task.complete(self.next_ctx(), resolution="done"))
        if error is None:
            self.model |= {"status": "completed", "evaluated": False, "progress": 100}
            self.model["on_time"] = None if due is None else now <= due

    @rule(who=people, score=st.integers(0, 6))
    def evaluate(self, who: str, score: int) -> None:
        error = self.needs("completed")
        if error is None and self.model["evaluated"]:
            error = InvalidTransition
        if error is None and who == self.model["assignee"]:
            error = PermissionDenied
        if error is None and not 1 <= score <= 5:
            error = ValidationFailed
        self.run(error, lambda: self.task.evaluate(self.next_ctx(actor=who), score=score))
        self.model["evaluated"] = self.model["evaluated"] or error is None

    @rule(who=people)
    def reopen(self, who: str) -> None:
        m = self.model
        judged = m["status"] == "completed" and (m["evaluated"] or m["on_time"] is False)
        error = self.needs("completed", "cancelled") or self.not_by_assignee(who, judged)
        self.run(error, lambda: self.task.reopen(self.next_ctx(actor=who), reason="r"))
        if error is None:
            self.model |= {"status": "open", "on_time": None}

    @rule()
    def cancel(self) -> None:
        error = self.needs(*ACTIVE)
        self.run(error, lambda: self.task.cancel(self.next_ctx(), reason="r"))
        if error is None:
            self.model["status"] = "cancelled"

    @invariant()
    def matches_the_model(self) -> None:
        t, m = self.task, self.model
        assert (t.status, t.assignee, t.progress) == (m["status"], m["assignee"], m["progress"])
        assert t.reassignments == m["reassignments"]
        assert t.evaluated == m["evaluated"]
        assert (t.due_at, t.on_time) == (m["due"], m["on_time"])
        assert t.late_due_setter == m["late_setter"]
        assert (t.completed_at is not None) == (t.status == "completed")


TaskMachine.TestCase.settings = MACHINE_SETTINGS
TestTaskMachine = TaskMachine.TestCase
