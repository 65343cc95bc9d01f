"""Task invariants: the status machine, evaluation rules and on-time computation."""

from __future__ import annotations

import uuid
from datetime import timedelta

import msgspec
import pytest

from domain.base import AggregateFullError, InvalidTransition, PermissionDenied, ValidationFailed
from domain.conversation import Conversation
from domain.customer import CustomerArchivedError
from domain.fields import TASK_EVENTS
from domain.task import Task, TaskCompleted, TaskEvaluated
from tests.unit.domain.factories import (
    CONVERSATION_ID,
    T0,
    TASK_ID,
    ctx,
    customer,
    emitted,
    replay,
)


def created(assignee: str | None = "agent-1", hours_due: int | None = 24) -> Task:
    return Task.create(
        ctx(department="support"),
        task_id=TASK_ID,
        customer=customer(),
        title="Call back",
        assignee=assignee,
        due_at=None if hours_due is None else T0 + timedelta(hours=hours_due),
        priority="high",
    )


def started() -> Task:
    task = created()
    task.start(ctx())
    return task


def test_create_defaults_department_and_rejects_archived_customers() -> None:
    task = created()
    assert (task.department, task.status, task.priority) == ("support", "open", "high")
    archived = customer()
    archived.archive(ctx())
    with pytest.raises(CustomerArchivedError):
        Task.create(ctx(), task_id=TASK_ID, customer=archived, title="x")
    with pytest.raises(ValidationFailed, match="priority"):
        Task.create(ctx(), task_id=TASK_ID, customer=customer(), title="x", priority="asap")


def test_a_task_from_a_conversation_is_of_the_conversation_s_customer() -> None:
    ada, bob = customer(), customer(uuid.uuid4())
    talk = Conversation.open(
        ctx(), conversation_id=CONVERSATION_ID, customer=ada, channel="email", subject="Hi"
    )
    task = Task.create(ctx(), task_id=TASK_ID, customer=ada, title="x", conversation=talk)
    assert task.conversation_id == CONVERSATION_ID
    with pytest.raises(ValidationFailed, match="conversation_id") as refused:
        Task.create(ctx(), task_id=TASK_ID, customer=bob, title="x", conversation=talk)
    assert str(ada.id) not in str(refused.value)  # names the conversation and the task's


@pytest.mark.parametrize(
    "action",
    [
        lambda t: t.complete(ctx(), resolution="done"),
        lambda t: t.evaluate(ctx(actor="boss"), score=4),
        lambda t: t.reopen(ctx(), reason="x"),
        lambda t: t.log_progress(ctx(), note="n", percent=10),
    ],
)
def test_invalid_transitions_from_open(action: object) -> None:
    task = created()
    with pytest.raises(InvalidTransition):
        action(task)  # type: ignore[operator]


def test_start_needs_an_assignee() -> None:
    task = created(assignee=None)
    with pytest.raises(InvalidTransition, match="assignee"):
        task.start(ctx())
    task.assign(ctx(), assignee="agent-2")
    task.start(ctx())
    assert task.status == "in_progress"


def test_reassignment_is_counted_and_noop_is_silent() -> None:
    task = created()
    task.collect_events()
    task.assign(ctx(), assignee="agent-1")
    task.assign(ctx(), assignee="agent-2", reason="holiday")
    task.assign(ctx(), assignee="agent-3", department="sales")
    assert emitted(task) == ["TaskAssigned", "TaskAssigned"]
    assert (task.reassignments, task.department) == (2, "sales")


def test_progress_is_bounded() -> None:
    task = started()
    task.log_progress(ctx(), note="half way", percent=50)
    assert task.progress == 50
    with pytest.raises(ValidationFailed, match="percent"):
        task.log_progress(ctx(), note="too far", percent=101)


def test_a_task_holds_at_most_max_events_and_one_stored_beyond_still_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Task.max_events == TASK_EVENTS
    monkeypatch.setattr(Task, "max_events", 4)
    task = started()  # created, started: 2
    task.log_progress(ctx(), note="a", percent=10)
    task.log_progress(ctx(), note="b", percent=20)
    with pytest.raises(AggregateFullError, match="holds 4 events, the most one may: go on in"):
        task.log_progress(ctx(), note="c", percent=30)
    assert task.version == 4  # nothing recorded
    events = task.collect_events()
    monkeypatch.setattr(Task, "max_events", 3)  # a lower bound later: stored ones still load
    rebuilt = replay(events)
    assert rebuilt is not None
    assert rebuilt.version == 4


@pytest.mark.parametrize(("minutes", "on_time"), [(60, True), (24 * 60 + 1, False)])
def test_completion_records_whether_it_was_on_time(minutes: int, on_time: bool) -> None:
    task = started()
    task.collect_events()
    task.complete(ctx(minutes=minutes), resolution="called back")
    (event,) = task.collect_events()
    assert isinstance(event, TaskCompleted)
    assert event.on_time is on_time


def test_without_due_time_on_time_is_unknown() -> None:
    task = created(hours_due=None)
    task.start(ctx())
    task.complete(ctx(), resolution="ok")
    assert task.on_time is None


def test_evaluation_by_someone_else_once_per_completion() -> None:
    task = started()
    task.complete(ctx(), resolution="done")
    with pytest.raises(PermissionDenied):
        task.evaluate(ctx(actor="agent-1"), score=5)
    task.evaluate(ctx(actor="boss", department="support"), score=4, feedback="good")
    with pytest.raises(InvalidTransition, match="already"):
        task.evaluate(ctx(actor="boss"), score=5)
    event = task.collect_events()[-1]
    assert isinstance(event, TaskEvaluated)
    assert (event.evaluator, event.assignee, event.department) == ("boss", "agent-1", "support")
    task.reopen(ctx(), reason="not really done")
    task.start(ctx())
    task.complete(ctx(), resolution="now done")
    task.evaluate(ctx(actor="boss"), score=5)
    assert task.evaluation_score == 5


def test_cancel_and_reopen() -> None:
    task = created()
    task.cancel(ctx(), reason="customer withdrew")
    with pytest.raises(InvalidTransition):
        task.cancel(ctx(), reason="again")
    with pytest.raises(InvalidTransition):
        task.assign(ctx(), assignee="x")
    task.reopen(ctx(), reason="customer back")
    assert task.status == "open"


def test_details_and_due_changes_record_only_differences() -> None:
    task = created()
    task.collect_events()
    task.change_details(ctx(), title="Call back", priority="urgent")
    task.change_due(ctx(), T0 + timedelta(hours=24))
    task.change_due(ctx(), None)
    events = task.collect_events()
    assert [e.wire_name() for e in events] == ["TaskDetailsChanged", "TaskDueDateChanged"]
    assert getattr(events[0], "title") is msgspec.UNSET  # noqa: B009 - UNSET check
    assert (task.priority, task.due_at) == ("urgent", None)


def test_replay_gives_the_same_state() -> None:
    task = started()
    task.log_progress(ctx(), note="n", percent=30)
    task.change_details(ctx(), description="more detail")
    task.complete(ctx(), resolution="done")
    task.evaluate(ctx(actor="boss"), score=3)
    assert replay(task.collect_events()) == task
