"""Task invariants: the status machine, evaluation rules and on-time computation."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.base import (
    AggregateFullError,
    Context,
    InvalidTransition,
    PermissionDenied,
    ValidationFailed,
)
from domain.conversation import Conversation
from domain.customer import CustomerArchivedError
from domain.fields import TASK_EVENTS
from domain.task import Task, TaskCompleted, TaskEvaluated
from domain.task_judgement import SelfEvaluationError
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
    task.reopen(ctx(actor="boss"), reason="not really done")
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


# --- the assignee never judges their own work -------------------------------------------

LATE = 24 * 60 + 1  # minutes after T0: `created()`'s due time has passed
AGENT_1 = ["agent-1", "Agent-1", "agent\u200b-1"]  # the assignee, however spelled


def completed(minutes: int, evaluator: str | None = None) -> Task:
    """agent-1's task, due T0 + 24 h, completed `minutes` after T0 and evaluated 1 by
    `evaluator` if given, its events collected."""
    task = started()
    task.complete(ctx(minutes=minutes), resolution="done")
    if evaluator is not None:
        task.evaluate(ctx(actor=evaluator, minutes=minutes), score=1)
    task.collect_events()
    return task


@pytest.mark.parametrize("assignee", AGENT_1)
@pytest.mark.parametrize(("minutes", "evaluator"), [(60, "boss"), (LATE, None), (LATE, "boss")])
def test_the_assignee_may_not_reopen_a_completion_that_was_evaluated_or_late(
    assignee: str, minutes: int, evaluator: str | None
) -> None:
    """Reopening takes back the evaluation and the lateness the statistics count: the
    assignee reopening an evaluated task emptied its evaluation for a colleague's 5."""
    task = completed(minutes, evaluator)
    with pytest.raises(SelfEvaluationError, match="assignee may not reopen"):
        task.reopen(ctx(actor=assignee, minutes=LATE + 60), reason="more to do")
    assert (task.status, task.collect_events()) == ("completed", [])
    task.reopen(ctx(actor="agent-2", minutes=LATE + 60), reason="more to do")  # a colleague
    assert task.status == "open"


def test_the_assignee_may_reopen_only_what_judges_nobody() -> None:
    """An on-time completion nobody evaluated yet, and a cancelled task (one whose
    evaluated completion someone else reopened included), until it is evaluated."""
    task = completed(60)
    task.reopen(ctx(minutes=61), reason="forgot the invoice")
    evaluated = completed(60, "boss")
    evaluated.reopen(ctx(actor="boss", minutes=61), reason="not done")
    for each in (task, evaluated):
        each.cancel(ctx(minutes=62), reason="withdrawn")
        each.reopen(ctx(minutes=63), reason="back")
        each.start(ctx(minutes=64))
        each.complete(ctx(minutes=65), resolution="done")
        each.evaluate(ctx(actor="boss", minutes=66), score=2)
        with pytest.raises(SelfEvaluationError):
            each.reopen(ctx(minutes=67), reason="again")


@pytest.mark.parametrize("to_due", [T0 + timedelta(days=30), None])
def test_the_assignee_may_move_a_due_time_until_it_has_passed(to_due: datetime | None) -> None:
    """Renegotiating a deadline is work; moving one that has passed sets the on-time
    figure of a late task (completed late, then reopened by someone else, included)."""
    task = started()
    task.change_due(ctx(minutes=24 * 60), to_due)  # at the due time: still on time
    assert task.due_at == to_due
    reopened = completed(LATE)
    reopened.reopen(ctx(actor="boss", minutes=LATE), reason="redo")
    for late in (started(), reopened):
        for assignee in AGENT_1:
            with pytest.raises(SelfEvaluationError, match="due time that has passed"):
                late.change_due(ctx(actor=assignee, minutes=LATE), to_due)
        late.change_due(ctx(minutes=LATE), late.due_at)  # no change: nothing to refuse
        late.change_due(ctx(actor="boss", minutes=LATE), to_due)
        assert late.due_at == to_due


def test_whoever_moved_a_passed_due_time_is_not_assigned_the_task() -> None:
    """The way round: hand the task to a colleague, move its due time, take it back."""
    task = started()
    task.assign(ctx(actor="agent-1", minutes=LATE), assignee="agent-2")
    task.change_due(ctx(actor="agent-1", minutes=LATE), T0 + timedelta(days=30))
    task.change_due(ctx(actor="agent-1", minutes=LATE), T0 + timedelta(days=31))  # still theirs
    for assignee in ("agent-1", "Agent-1"):  # a name given is printable (`validation.person`)
        with pytest.raises(SelfEvaluationError, match="may not be its assignee"):
            task.assign(ctx(actor="boss", minutes=LATE), assignee=assignee)
    assert task.assignee == "agent-2"
    task.change_due(ctx(actor="boss", minutes=LATE), T0 + timedelta(days=29))
    task.assign(ctx(actor="boss", minutes=LATE), assignee="agent-1")
    assert (task.assignee, task.late_due_setter) == ("agent-1", None)
    assert replay(task.collect_events()) == task


ALONE: dict[str, Callable[[Task, Context], object]] = {
    "reopen": lambda task, c: task.reopen(c, reason="more"),
    "start": lambda task, c: task.start(c),
    "due": lambda task, c: task.change_due(c, T0 + timedelta(days=365)),
    "complete": lambda task, c: task.complete(c, resolution="again"),
    "cancel": lambda task, c: task.cancel(c, reason="gone"),
    "hand off": lambda task, c: task.assign(c, assignee="agent-2"),
    "take": lambda task, c: task.assign(c, assignee="agent-1"),
}


@given(
    steps=st.lists(st.sampled_from(sorted(ALONE)), max_size=12),
    judged=st.sampled_from(["overdue", "late", "evaluated"]),
)
def test_alone_the_assignee_never_makes_their_work_look_better(
    steps: list[str], judged: str
) -> None:
    """Whatever agent-1 does by themselves to their overdue task or their late or
    evaluated completion: a completion of theirs stays late, and one judged stays."""
    if judged == "overdue":
        task = started()
    else:
        task = completed(LATE, "boss" if judged == "evaluated" else None)
    for minute, step in enumerate(steps, start=LATE + 1):
        with contextlib.suppress(InvalidTransition, PermissionDenied):
            ALONE[step](task, ctx(minutes=minute))
        if task.status == "completed" and task.assignee == "agent-1":
            assert task.on_time is False
    if judged != "overdue":
        assert (task.status, task.evaluated) == ("completed", judged == "evaluated")
