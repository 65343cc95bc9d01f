"""Task statistics count each task once, by its latest outcome: reopening a task takes
back what its completion (or cancellation) and evaluation counted, so reopening and
completing again cannot pump an assignee's figures (the red team's story, step by step)."""

from __future__ import annotations

import random
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.base import Context, DomainEvent
from domain.customer import Customer
from domain.task import Task
from projections import PROJECTIONS
from projections.satisfaction import ALL
from tests.unit.projections.memory import replay
from tests.unit.projections.test_oracle import REDONE
from tests.unit.projections.world import Step, World, steps

NOW = datetime(2024, 5, 1, tzinfo=UTC)
OUTCOMES = ("created", "completed", "completed_on_time", "completed_late", "evaluations",
            "evaluation_sum", "cancelled", "reassignments")  # fmt: skip


class Story:
    """Tasks of one customer, driven through the domain; `figures` replays their events."""

    def __init__(self) -> None:
        self.minutes = 0
        self.events: list[DomainEvent] = []
        self.customer = Customer.register(
            self.ctx(), customer_id=uuid4(), name="Ann", owner_department="support"
        )
        self.events += self.customer.collect_events()

    def ctx(self, actor: str = "lead") -> Context:
        self.minutes += 60
        at = NOW + timedelta(minutes=self.minutes)
        return Context(actor=actor, actor_department="support", occurred_at=at, correlation_id="c")

    def task(self, due_at: datetime | None = None) -> Task:
        task = Task.create(
            self.ctx(), task_id=uuid4(), customer=self.customer, title="t",
            department="support", assignee="ann", due_at=due_at,
        )  # fmt: skip
        return self.kept(task)

    def kept(self, task: Task) -> Task:
        self.events += task.collect_events()
        return task

    def done(self, task: Task) -> None:
        task.start(self.ctx())
        task.complete(self.ctx(), resolution="ok")
        self.kept(task)

    def figures(self, department: str = "support", assignee: str = "ann") -> dict[str, Any]:
        tables = replay(PROJECTIONS["stats"], self.events).tables
        row = tables["tasks"].get((department, assignee), {})
        durations = [
            d for d in tables["task_durations"].values()
            if department in (ALL, d["department"]) and assignee in (ALL, d["assignee"])
        ]  # fmt: skip
        return {name: row.get(name, 0) for name in OUTCOMES} | {"durations": len(durations)}


def expect(figures: dict[str, Any], **values: int) -> None:
    assert {name: figures[name] for name in values} == values


def test_reopening_and_completing_again_counts_the_task_once() -> None:
    story = Story()
    a = story.task(due_at=datetime(2099, 1, 1, tzinfo=UTC))
    story.done(a)
    expect(story.figures(), created=1, completed=1, completed_on_time=1, durations=1)
    b = story.task()  # no due time: neither on time nor late
    story.done(b)
    expect(story.figures(), created=2, completed=2, completed_on_time=1, completed_late=0)
    for _ in range(3):
        a.reopen(story.ctx(), reason="again")
        story.kept(a)
        expect(story.figures(), created=2, completed=1, completed_on_time=0, durations=1)
        story.done(a)
        expect(story.figures(), created=2, completed=2, completed_on_time=1, durations=2)
    for department, assignee in (("support", ALL), (ALL, "ann"), (ALL, ALL)):
        expect(story.figures(department, assignee), completed=2, completed_on_time=1, durations=2)


def test_a_duration_runs_from_creation_to_the_latest_completion() -> None:
    story = Story()
    a = story.task()
    story.done(a)
    a.reopen(story.ctx(), reason="again")
    story.done(a)
    (row,) = replay(PROJECTIONS["stats"], story.events).tables["task_durations"].values()
    assert a.created_at is not None
    assert a.completed_at is not None
    assert (row["task_id"], row["completion"]) == (a.id, 2)
    assert row["seconds"] == (a.completed_at - a.created_at).total_seconds()


def test_an_evaluation_counts_for_the_latest_completion_only() -> None:
    story = Story()
    a = story.task(due_at=NOW - timedelta(days=1))  # late
    story.done(a)
    a.evaluate(story.ctx("eve"), score=5)
    story.kept(a)
    expect(story.figures(), completed=1, completed_late=1, evaluations=1, evaluation_sum=5)
    a.reopen(story.ctx(), reason="again")
    story.kept(a)
    expect(story.figures(), completed=0, completed_late=0, evaluations=0, evaluation_sum=0)
    story.done(a)
    expect(story.figures(), completed=1, completed_late=1, evaluations=0, evaluation_sum=0)
    a.evaluate(story.ctx("eve"), score=2)
    story.kept(a)
    expect(story.figures(), completed=1, evaluations=1, evaluation_sum=2)
    expect(story.figures(ALL, ALL), completed=1, evaluations=1, evaluation_sum=2, durations=1)


def test_cancelling_again_counts_one_cancellation() -> None:
    story = Story()
    c = story.task()
    c.cancel(story.ctx(), reason="no")
    story.kept(c)
    expect(story.figures(), created=1, cancelled=1)
    c.reopen(story.ctx(), reason="yes")
    story.kept(c)
    expect(story.figures(), cancelled=0)
    c.cancel(story.ctx(), reason="no")
    story.kept(c)
    expect(story.figures(), created=1, cancelled=1)
    c.reopen(story.ctx(), reason="yes")
    story.done(c)
    expect(story.figures(), cancelled=0, completed=1, durations=1)


def test_a_reopened_task_done_by_someone_else_moves_its_completion() -> None:
    """The completion counted for ann is taken back from her rows, and the next one is
    bob's, in the department the task moved to; the reassignment stays ann's."""
    story = Story()
    a = story.task()
    story.done(a)
    a.evaluate(story.ctx("eve"), score=4)
    a.reopen(story.ctx(), reason="again")
    a.assign(story.ctx(), assignee="bob", department="sales")
    story.done(a)
    expect(story.figures(), created=1, completed=0, evaluations=0, durations=0)
    expect(story.figures("sales", "ann"), reassignments=1, completed=0)
    expect(story.figures("sales", "bob"), created=0, completed=1, evaluations=0, durations=1)
    expect(story.figures(ALL, ALL), created=1, completed=1, evaluation_sum=0, durations=1)


def interleaved(events: list[DomainEvent], rnd: random.Random) -> list[DomainEvent]:
    """The events in another order that keeps each aggregate's own (as Kafka does)."""
    queues: dict[UUID, deque[DomainEvent]] = {}
    for e in events:
        queues.setdefault(e.originator_id, deque()).append(e)
    mixed: list[DomainEvent] = []
    while queues:
        aggregate = rnd.choice(sorted(queues))
        mixed.append(queues[aggregate].popleft())
        if not queues[aggregate]:
            del queues[aggregate]
    return mixed


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps(), batch=st.integers(1, 40), rnd=st.randoms(use_true_random=False))
@example(plan=REDONE, batch=1, rnd=random.Random(0))
def test_reopened_tasks_give_the_same_rows_in_any_order_and_batches(
    plan: list[Step], batch: int, rnd: random.Random
) -> None:
    """Taking back a completion is one more change of the task's own row and counters:
    a rebuild in other batches and another interleaving of aggregates gives the same rows."""
    events = World().play(plan)
    reference = replay(PROJECTIONS["stats"], events).tables
    assert replay(PROJECTIONS["stats"], events, batch_size=batch).tables == reference
    mixed = interleaved(events, rnd)
    assert replay(PROJECTIONS["stats"], mixed, batch_size=batch).tables == reference
