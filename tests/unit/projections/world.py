"""Random command sequences through the domain, with extreme but valid values.

`steps()` draws a list of commands; `World.play(steps)` runs them against the aggregates
and keeps, in order, the events they emit (a refused command emits none). Values come
from the bounds in `domain.validation`, edges included: texts as long as a field takes,
astral-plane characters, every zone offset from -23:59 to +23:59, the first and last
instants of the calendar, the largest amounts. When those bounds change, so do these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from hypothesis import strategies as st

from domain import validation as bounds
from domain.base import Context, DomainError, DomainEvent
from domain.conversation import CHANNELS, DIRECTIONS, OUTCOMES, Conversation
from domain.customer import Customer, CustomerErasedError
from domain.task import Task
from domain.task_details import PRIORITIES

Step = tuple[str, int, dict[str, Any]]
DEPARTMENTS = ("sales", "support", "marketing")
NOW = datetime(2024, 5, 1, tzinfo=UTC)
ASTRAL = "\U0001d518"  # MATHEMATICAL FRAKTUR CAPITAL U, outside the Basic Multilingual Plane


def text(limit: int) -> st.SearchStrategy[str]:
    """Free text for a field that takes up to `limit` characters: short, or the longest."""
    letters = st.characters(codec="utf-8", exclude_characters=bounds.FORBIDDEN_IN_TEXT)
    edges = ["a" * limit, ASTRAL * limit, f" {ASTRAL}\t", "\U0001f600"]
    return st.one_of(st.text(letters, min_size=1, max_size=12), st.sampled_from(edges))


def _instants(latest: datetime = bounds.LATEST_INSTANT) -> st.SearchStrategy[datetime]:
    """Instants of the whole calendar, its edges included, up to `latest`."""
    minutes = int(bounds.MAX_UTC_OFFSET.total_seconds() // 60)
    zones = st.integers(-minutes, minutes).map(lambda m: timezone(timedelta(minutes=m)))
    low = bounds.EARLIEST_INSTANT.replace(tzinfo=None)
    high = latest.replace(tzinfo=None)
    local = st.datetimes(min_value=low, max_value=high)
    edges = [bounds.EARLIEST_INSTANT, latest]
    edges += [low.replace(tzinfo=timezone(timedelta(hours=14))), high.replace(tzinfo=UTC)]
    drawn = st.builds(lambda at, zone: at.replace(tzinfo=zone), local, zones)
    return st.one_of(st.sampled_from(edges), drawn).filter(
        lambda at: bounds.EARLIEST_INSTANT <= at <= latest
    )


def _amounts() -> st.SearchStrategy[Decimal]:
    step = Decimal(1).scaleb(-bounds.AMOUNT_PLACES)
    top = bounds.MAX_AMOUNT - step
    drawn = st.decimals(min_value=0, max_value=top, places=bounds.AMOUNT_PLACES)
    return st.one_of(st.sampled_from([Decimal(0), step, top]), drawn)


SHORT, TEXT, ADDRESS, LONG, LONGER, LONGEST = map(text, (100, 200, 500, 2_000, 5_000, 20_000))
"""Free text at each length limit the domain's fields have."""
INSTANT = _instants()
PAST = _instants(NOW)  # a message sent, an order placed: never after the command
DEPARTMENT = st.one_of(
    st.sampled_from(DEPARTMENTS), st.from_regex(bounds.DEPARTMENT_PATTERN, fullmatch=True)
)
TAG = st.from_regex(bounds.TAG_PATTERN, fullmatch=True)
CODE = st.one_of(st.just("email_marketing"), st.from_regex(bounds.CODE_PATTERN, fullmatch=True))
EMAIL = st.one_of(
    st.just(f"{ASTRAL}@example.com"),
    st.from_regex(bounds.EMAIL_PATTERN, fullmatch=True, alphabet=st.characters(codec="utf-8")),
    st.from_regex(r"[a-z0-9.+_-]{1,64}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True),
)
PHONE = st.one_of(st.just("00 44 (20) 7946-0000"), st.from_regex(r"\+[0-9]{7,15}", fullmatch=True))
ORDER = st.sampled_from(["o-1", "o-2"])
MESSAGE = st.sampled_from(["m-1", "m-2", "m-3"])
AGENT = st.one_of(st.none(), st.sampled_from(["ann", "bob"]), SHORT)


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


COMMANDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "register": {"name": TEXT, "company": _maybe(TEXT), "email": _maybe(EMAIL),
                 "phone": _maybe(PHONE), "address": _maybe(ADDRESS), "owner_department": DEPARTMENT,
                 "owner_agent": AGENT, "tags": st.lists(TAG, max_size=3),
                 "consents": st.dictionaries(CODE, st.booleans(), max_size=2)},
    "update_profile": {"name": TEXT, "email": _maybe(EMAIL), "address": _maybe(ADDRESS)},
    "change_owner": {"department": DEPARTMENT, "agent": AGENT},
    "share_with": {"department": DEPARTMENT},
    "unshare": {"department": DEPARTMENT},
    "tag": {"tag": TAG},
    "untag": {"tag": TAG},
    "set_consent": {"consent": CODE, "granted": st.booleans()},
    "record_order": {"order_id": ORDER, "amount": _amounts(), "currency": st.just("EUR"),
                     "status": CODE, "ordered_at": PAST},
    "change_order_status": {"order_id": ORDER, "status": CODE},
    "archive": {"reason": _maybe(TEXT)},
    "erase": {"reason": _maybe(TEXT)},
    "open": {"channel": st.sampled_from(sorted(CHANNELS)), "subject": TEXT,
             "department": _maybe(DEPARTMENT), "agent": AGENT,
             "participants": st.lists(SHORT, max_size=2)},
    "log_message": {"message_id": MESSAGE, "direction": st.sampled_from(sorted(DIRECTIONS)),
                    "author": TEXT, "content": LONGEST, "sent_at": PAST},
    "add_note": {"message_id": MESSAGE, "content": LONGEST},
    "correct_message": {"message_id": MESSAGE, "content": LONGEST, "reason": TEXT},
    "retract_message": {"message_id": MESSAGE, "reason": TEXT},
    "hand_off": {"to_department": DEPARTMENT, "to_agent": AGENT, "note": _maybe(LONG)},
    "close": {"outcome": st.sampled_from(sorted(OUTCOMES)), "summary": _maybe(LONG)},
    "reopen_conversation": {"reason": TEXT},
    "rate_satisfaction": {"score": st.integers(1, 5), "comment": _maybe(LONG)},
    "score_recommendation": {"score": st.integers(0, 10), "comment": _maybe(LONG)},
    "create": {"title": TEXT, "description": _maybe(LONGER), "department": _maybe(DEPARTMENT),
               "assignee": AGENT, "due_at": _maybe(INSTANT),
               "priority": st.sampled_from(sorted(PRIORITIES)), "conversation": st.booleans()},
    "assign": {"assignee": SHORT, "reason": _maybe(TEXT), "department": _maybe(DEPARTMENT)},
    "start": {},
    "log_progress": {"note": LONGER, "percent": st.integers(0, 100)},
    "change_due": {"due_at": _maybe(INSTANT)},
    "change_details": {"title": TEXT, "description": _maybe(LONGER),
                       "priority": st.sampled_from(sorted(PRIORITIES))},
    "complete": {"resolution": LONGER},
    "evaluate": {"score": st.integers(1, 5), "feedback": _maybe(LONGER)},
    "reopen_task": {"reason": TEXT},
    "cancel": {"reason": TEXT},
    "work": {"percent": st.integers(0, 100), "resolution": LONGER},
    "rework": {"reason": TEXT, "percent": st.integers(0, 100), "resolution": LONGER,
               "score": st.integers(1, 5), "cancel": st.booleans()},
    "survey": {"outcome": st.sampled_from(sorted(OUTCOMES)), "csat": st.integers(1, 5),
               "nps": st.integers(0, 10)},
}  # fmt: skip
"""Each command's arguments; `work`, `rework` and `survey` are a few commands in a row (a
task started, progressed and completed; a task done and evaluated, reopened, then done or
cancelled again; a conversation closed and answered), which random single steps rarely line up."""


CREATING = ("open", "create", "work", "survey")
"""Drawn more often, so that most steps find an aggregate of their kind."""


FIRST: Step = ("register", 0, {"name": "Ada", "owner_department": "sales"})
"""Every plan starts with a customer, so the steps after it find one."""


def steps(min_size: int = 10, max_size: int = 40) -> st.SearchStrategy[list[Step]]:
    """A list of (command, target index, arguments), after `FIRST`."""
    names = [*COMMANDS, *CREATING * 3]
    step = st.one_of(
        [
            st.tuples(st.just(name), st.integers(0, 1), st.fixed_dictionaries(COMMANDS[name]))
            for name in names
        ]
    )
    return st.lists(step, min_size=min_size, max_size=max_size).map(lambda rest: [FIRST, *rest])


class World:
    """The aggregates the steps made, and every event they emitted, in order.

    `as_stored_now`: no conversation or task of an erased customer changes after the
    erasure, as the event stores now refuse (`services.batch_refusals`); for a history
    played into a real event store. Without it such events are played too, as histories
    stored before that rule hold them and projections must still apply them."""

    def __init__(self, *, as_stored_now: bool = False) -> None:
        self.as_stored_now = as_stored_now
        self.customers: list[Customer] = []
        self.conversations: list[Conversation] = []
        self.tasks: list[Task] = []
        self.events: list[DomainEvent] = []
        self.minutes = 0

    def play(self, plan: list[Step]) -> list[DomainEvent]:
        for name, target, args in plan:
            with contextlib.suppress(DomainError, NothingYet):  # refused: no event
                self._run(name, target, dict(args))
        return self.events

    def ctx(self, actor: str = "ann", department: str = "sales") -> Context:
        self.minutes += 1
        at = NOW + timedelta(minutes=self.minutes)
        return Context(actor=actor, actor_department=department, occurred_at=at, correlation_id="c")

    def _run(self, name: str, target: int, args: dict[str, Any]) -> None:
        if name == "register":
            self._keep(self.customers, Customer.register(self.ctx(), customer_id=uuid4(), **args))
        elif name == "open":
            customer = self._pick(self.customers, target)
            opened = Conversation.open(
                self.ctx(), conversation_id=uuid4(), customer=customer, **args
            )
            self._keep(self.conversations, opened)
        elif name == "create":
            self._create_task(target, args)
        else:
            aggregate, action = self._action(name, target)
            if self.as_stored_now and self._erased(getattr(aggregate, "customer_id", None)):
                raise CustomerErasedError(f"the customer of {aggregate.id} was erased")
            try:
                action(aggregate, self, args)
            finally:  # a composite step refused part-way keeps what its first commands did
                self.events += aggregate.collect_events()

    def _create_task(self, target: int, args: dict[str, Any]) -> None:
        customer = self._pick(self.customers, target)
        talks = [c for c in self.conversations if c.customer_id == customer.id]
        conversation = talks[0] if talks and args.pop("conversation") else None
        args.pop("conversation", None)
        task = Task.create(
            self.ctx(), task_id=uuid4(), customer=customer, conversation=conversation, **args
        )
        self._keep(self.tasks, task)

    def _action(self, name: str, target: int) -> tuple[Any, Action]:
        for pool, actions in (
            (self.customers, CUSTOMER_ACTIONS),
            (self.conversations, CONVERSATION_ACTIONS),
            (self.tasks, TASK_ACTIONS),
        ):
            if name in actions:
                return self._pick(pool, target), actions[name]
        raise KeyError(name)

    def _erased(self, customer_id: UUID | None) -> bool:
        return any(c.id == customer_id and c.erased for c in self.customers)

    def _keep(self, pool: list[Any], aggregate: Any) -> None:
        pool.append(aggregate)
        self.events += aggregate.collect_events()

    @staticmethod
    def _pick(pool: list[Any], target: int) -> Any:
        if not pool:
            raise NothingYet
        return pool[target % len(pool)]


class NothingYet(Exception):  # noqa: N818 - a step, not an error
    """A step aims at an aggregate of a kind the world has none of yet."""


Action = Callable[[Any, "World", dict[str, Any]], None]


def _call(method: str, *positional: str) -> Action:
    """An action calling `aggregate.method(ctx, *positional args, **the other args)`."""

    def act(aggregate: Any, world: World, args: dict[str, Any]) -> None:
        values = [args.pop(name) for name in positional]
        getattr(aggregate, method)(world.ctx(), *values, **args)

    return act


def _work(task: Task, world: World, args: dict[str, Any]) -> None:
    if task.assignee is None:
        task.assign(world.ctx(), assignee="ann")
    task.start(world.ctx())
    task.log_progress(world.ctx(), note="n", percent=args["percent"])
    task.complete(world.ctx(), resolution=args["resolution"])


def _rework(task: Task, world: World, args: dict[str, Any]) -> None:
    """Done (if it is not yet) and evaluated, reopened, then done or cancelled again."""
    if task.status in ("open", "in_progress"):
        _finish(task, world, args)
    if task.status == "completed" and not task.evaluated:
        _evaluate(task, world, {"score": args["score"]})
    task.reopen(world.ctx(), reason=args["reason"])
    if args["cancel"]:
        task.cancel(world.ctx(), reason=args["reason"])
    else:
        _finish(task, world, args)


def _finish(task: Task, world: World, args: dict[str, Any]) -> None:
    if task.status == "open":
        _work(task, world, args)
    else:
        task.complete(world.ctx(), resolution=args["resolution"])


def _survey(talk: Conversation, world: World, args: dict[str, Any]) -> None:
    talk.close(world.ctx(), outcome=args["outcome"])
    talk.rate_satisfaction(world.ctx(), score=args["csat"])
    talk.score_recommendation(world.ctx(), score=args["nps"])


def _evaluate(task: Task, world: World, args: dict[str, Any]) -> None:
    evaluator = "bob" if task.assignee == "ann" else "ann"
    task.evaluate(world.ctx(actor=evaluator), **args)


CUSTOMER_ACTIONS: dict[str, Action] = {
    name: _call(name) for name in ("update_profile", "change_owner", "record_order")
} | {
    "share_with": _call("share_with", "department"),
    "unshare": _call("unshare", "department"),
    "tag": _call("tag", "tag"),
    "untag": _call("untag", "tag"),
    "set_consent": _call("set_consent", "consent", "granted"),
    "change_order_status": _call("change_order_status", "order_id", "status"),
    "archive": _call("archive", "reason"),
    "erase": _call("erase", "reason"),
}
CONVERSATION_ACTIONS: dict[str, Action] = {
    name: _call(name) for name in ("log_message", "add_note", "hand_off", "close")
} | {
    "correct_message": _call("correct_message", "message_id"),
    "retract_message": _call("retract_message", "message_id"),
    "reopen_conversation": _call("reopen"),
    "rate_satisfaction": _call("rate_satisfaction"),
    "score_recommendation": _call("score_recommendation"),
    "survey": _survey,
}
TASK_ACTIONS: dict[str, Action] = {
    name: _call(name) for name in ("assign", "start", "log_progress", "change_details")
} | {
    "change_due": _call("change_due", "due_at"),
    "complete": _call("complete"),
    "evaluate": _evaluate,
    "reopen_task": _call("reopen"),
    "cancel": _call("cancel"),
    "work": _work,
    "rework": _rework,
}
