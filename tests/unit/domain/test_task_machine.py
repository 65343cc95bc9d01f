"""Task against a plain model of its status machine under random command sequences."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from domain.base import DomainError, InvalidTransition, PermissionDenied, ValidationFailed
from domain.task import Task
from tests.unit.domain.factories import T0, TASK_ID, customer
from tests.unit.domain.machine_support import MACHINE_SETTINGS, AggregateMachine, later

people = st.sampled_from(["agent-1", "agent-2", "boss"])
ACTIVE = {"open", "in_progress"}


class TaskMachine(AggregateMachine):
    task: Task
    model: dict[str, Any]

    def subject(self) -> Task:
        return self.task

    @initialize(assignee=st.sampled_from(["agent-1", None]))
    def create(self, assignee: str | None) -> None:
        self.task = Task.create(
            self.next_ctx(), task_id=TASK_ID, customer=customer(), title="t", assignee=assignee
        )
        self.history.extend(self.task.collect_events())
        self.model = {"status": "open", "assignee": assignee, "evaluated": False}
        self.model |= {"reassignments": 0, "progress": 0}

    def needs(self, *statuses: str) -> type[DomainError] | None:
        return None if self.model["status"] in statuses else InvalidTransition

    @rule(who=people)
    def assign(self, who: str) -> None:
        error = self.needs(*ACTIVE)
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

    @rule(hours=st.none() | st.integers(1, 48))
    def change_due(self, hours: int | None) -> None:
        error = self.needs(*ACTIVE)
        due = None if hours is None else T0 + later(60 * hours)
        self.run(error, lambda: self.task.change_due(self.next_ctx(), due))

    @rule()
    def complete(self) -> None:
        error = self.needs("in_progress")
        self.run(error, lambda: self.task.complete(self.next_ctx(), resolution="done"))
        if error is None:
            self.model |= {"status": "completed", "evaluated": False, "progress": 100}

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

    @rule()
    def reopen(self) -> None:
        error = self.needs("completed", "cancelled")
        self.run(error, lambda: self.task.reopen(self.next_ctx(), reason="r"))
        if error is None:
            self.model["status"] = "open"

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
        assert (t.completed_at is not None) == (t.status == "completed")


TaskMachine.TestCase.settings = MACHINE_SETTINGS
TestTaskMachine = TaskMachine.TestCase
