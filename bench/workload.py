"""A seeded random workload of valid domain events (through the aggregates' decisions).

Used by the projection benchmark and by the projection tests (replay, determinism),
which import it from here: `bench/` never imports from `tests/`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.base import Context, DomainError, DomainEvent
from domain.conversation import Conversation
from domain.customer import Customer, CustomerErasedError
from domain.task import Task

DEPARTMENTS = ("sales", "support", "marketing")
AGENTS = ("ann", "bob", "cho", "dev")
START = datetime(2024, 1, 1, tzinfo=UTC)


class Workload:
    """Generates events over a pool of live customers, conversations and tasks."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.now = START
        self.customers: list[Customer] = []
        self.conversations: list[Conversation] = []
        self.tasks: list[Task] = []
        self.erased: set[uuid.UUID] = set()

    def ctx(self, department: str | None = None) -> Context:
        self.now += timedelta(seconds=self.rng.randint(1, 600))
        dept = department or self.rng.choice(DEPARTMENTS)
        return Context(
            actor=self.rng.choice(AGENTS),
            actor_department=dept,
            occurred_at=self.now,
            correlation_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
        )

    def uid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def events(self, count: int) -> Iterator[DomainEvent]:
        produced = 0
        while produced < count:
            try:
                aggregate = self._step()
            except DomainError:
                continue
            for event in aggregate.collect_events():
                produced += 1
                yield event

    def _step(self) -> Customer | Conversation | Task:
        roll = self.rng.random()
        if roll < 0.08 or len(self.customers) < 5:
            return self._new_customer()
        if roll < 0.2:
            return self._customer_change(self.rng.choice(self.customers[-200:]))
        if roll < 0.3 or not self.conversations:
            return self._new_conversation()
        if roll < 0.65:
            return self._conversation_change(self.rng.choice(self.conversations[-300:]))
        if roll < 0.75 or not self.tasks:
            return self._new_task()
        return self._task_change(self.rng.choice(self.tasks[-300:]))

    def _new_customer(self) -> Customer:
        n = len(self.customers)
        customer = Customer.register(
            self.ctx(), customer_id=self.uid(), name=f"Customer {n}", company=f"Co {n % 50}",
            email=f"c{n}@example.com", phone=f"+4930{n:07d}", address=f"Street {n}",
            owner_department=self.rng.choice(DEPARTMENTS), owner_agent=self.rng.choice(AGENTS),
            tags=self.rng.sample(["vip", "b2b", "trial", "churn-risk"], 2),
            consents={"email_marketing": self.rng.random() < 0.5},
        )  # fmt: skip
        self.customers.append(customer)
        return customer

    def _customer_change(self, c: Customer) -> Customer:
        ctx, r = self.ctx(), self.rng.random()
        if r < 0.2:
            c.update_profile(ctx, email=f"new{self.rng.randint(0, 9999)}@example.com")
        elif r < 0.35:
            c.share_with(ctx, self.rng.choice(DEPARTMENTS))
        elif r < 0.45:
            c.change_owner(ctx, department=self.rng.choice(DEPARTMENTS), agent="ann")
        elif r < 0.55:
            c.tag(ctx, self.rng.choice(["vip", "lead", "partner"]))
        elif r < 0.65:
            c.set_consent(ctx, "email_marketing", self.rng.random() < 0.5)
        elif r < 0.97:
            amount = Decimal(self.rng.randint(100, 99999)) / 100
            c.record_order(ctx, order_id=f"o{self.rng.getrandbits(32)}", amount=amount,
                           currency=self.rng.choice(["EUR", "USD"]), status="placed",
                           ordered_at=ctx.occurred_at)  # fmt: skip
        elif r < 0.985:
            c.archive(ctx, reason="inactive")
        else:
            c.erase(ctx, reason="request")
            self.erased.add(c.id)
        return c

    def _not_erased(self, customer_id: uuid.UUID | None) -> None:
        """No conversation or task of an erased customer changes: the product refuses
        every command about one, the event store's insert too (`services.batch_refusals`)."""
        if customer_id in self.erased:
            raise CustomerErasedError(f"customer {customer_id} was erased")

    def _new_conversation(self) -> Conversation:
        customer = self.rng.choice(self.customers[-200:])
        conversation = Conversation.open(
            self.ctx(), conversation_id=self.uid(), customer=customer,
            channel=self.rng.choice(["email", "phone", "chat"]), subject="Question",
            agent=self.rng.choice(AGENTS),
        )  # fmt: skip
        self.conversations.append(conversation)
        return conversation

    def _conversation_change(self, c: Conversation) -> Conversation:
        self._not_erased(c.customer_id)
        ctx, r = self.ctx(), self.rng.random()
        if r < 0.45:
            direction = self.rng.choice(["inbound", "outbound"])
            c.log_message(ctx, message_id=f"m{c.version}", direction=direction,
                          author="someone", content=f"text {c.version}")  # fmt: skip
        elif r < 0.5:
            c.correct_message(ctx, f"m{c.version - 1}", content="fixed", reason="typo")
        elif r < 0.55:
            c.retract_message(ctx, f"m{c.version - 1}", reason="wrong")
        elif r < 0.65:
            c.hand_off(ctx, to_department=self.rng.choice(DEPARTMENTS), to_agent="bob")
        elif r < 0.8:
            c.close(ctx, outcome="resolved", summary="done")
        elif r < 0.9:
            c.rate_satisfaction(ctx, score=self.rng.randint(1, 5), comment="ok")
        else:
            c.score_recommendation(ctx, score=self.rng.randint(0, 10))
        return c

    def _new_task(self) -> Task:
        customer = self.rng.choice(self.customers[-200:])
        task = Task.create(
            self.ctx(), task_id=self.uid(), customer=customer, title="Follow up",
            assignee=self.rng.choice(AGENTS), due_at=self.now + timedelta(days=1),
        )  # fmt: skip
        self.tasks.append(task)
        return task

    def _task_change(self, t: Task) -> Task:
        self._not_erased(t.customer_id)
        ctx, r = self.ctx(), self.rng.random()
        if r < 0.2:
            t.assign(ctx, assignee=self.rng.choice(AGENTS), reason="load")
        elif r < 0.35:
            t.start(ctx)
        elif r < 0.45:
            t.log_progress(ctx, note="working", percent=50)
        elif r < 0.75:
            t.complete(ctx, resolution="done")
        elif r < 0.85:
            t.evaluate(ctx, score=self.rng.randint(1, 5))
        elif r < 0.92:
            t.reopen(ctx, reason="again")
        else:
            t.cancel(ctx, reason="obsolete")
        return t
