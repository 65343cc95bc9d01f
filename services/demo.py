"""`crm demo`: a realistic scenario loaded through the command service.

Sales registers customers and records orders, support runs conversations with
hand-offs between departments, tasks are worked, completed and evaluated by managers,
and customers answer CSAT/NPS surveys. Deterministic (seeded), so two demos give the
same story. Shows a rich progress bar.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from decimal import Decimal
from uuid import UUID

from rich.progress import Progress

from domain.base import Context
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from services.bootstrap import Runtime
from services.commands import Caller, CommandService
from services.group_commit import DirectCommitter
from services.policy import Principal, Role

FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances")
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie")
COMPANIES = ("ACME", "Globex", "Initech", "Umbrella", "Hooli", "Stark", None)
TAGS = ("vip", "newsletter", "enterprise", "smb", "churn-risk", "trial")


def _caller(name: str, department: str, role: Role) -> Caller:
    principal = Principal(name=name, department=department, role=role)
    return Caller(principal=principal, correlation_id=f"demo-{name}")


SALES = _caller("sara", "sales", Role.AGENT)
SUPPORT = _caller("sven", "support", Role.AGENT)
SUPPORT_LEAD = _caller("sofia", "support", Role.MANAGER)
CUSTOMER = _caller("survey-bot", "marketing", Role.SERVICE)


def load_demo(runtime: Runtime, *, customers: int = 300, seed: int = 7) -> None:
    asyncio.run(_load(runtime, customers, seed))
    print(f"demo loaded: {customers} customers, head position {runtime.app.head_position()}")


async def _load(runtime: Runtime, customers: int, seed: int) -> None:
    service = CommandService(runtime.app, DirectCommitter(runtime.app), runtime.keyring)
    rng = random.Random(seed)
    with Progress() as progress:
        bar = progress.add_task("loading demo customers", total=customers)
        for number in range(customers):
            await _customer_story(service, rng, number)
            progress.advance(bar)


async def _customer_story(service: CommandService, rng: random.Random, number: int) -> None:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    customer = await service.register_customer(
        SALES,
        name=f"{first} {last}",
        company=rng.choice(COMPANIES),
        email=f"{first}.{last}.{number}@example.com".lower(),
        phone=f"+4420{rng.randrange(10**7, 10**8)}",
        tags=rng.sample(TAGS, 2),
        consents={"email_marketing": rng.random() < 0.6},
    )
    await service.change(
        SALES, "customer.share", Customer, customer.id, lambda c, ctx: c.share_with(ctx, "support")
    )
    for order in range(rng.randrange(0, 3)):
        amount = Decimal(rng.randrange(1000, 500000)) / 100
        order_id = f"SO-{number}-{order}"
        await service.change(
            SALES,
            "customer.order",
            Customer,
            customer.id,
            _order(order_id, amount),
        )
    if rng.random() < 0.7:
        await _conversation_story(service, rng, customer.id)


def _order(order_id: str, amount: Decimal) -> Callable[[Customer, Context], None]:
    return lambda c, ctx: c.record_order(ctx, order_id=order_id, amount=amount, currency="EUR")


async def _conversation_story(
    service: CommandService, rng: random.Random, customer_id: UUID
) -> None:
    """Sales hears a problem, hands it to support, support solves it, the customer rates."""
    opened = await service.open_conversation(
        SALES, customer_id, channel=rng.choice(("email", "phone", "chat")), subject="Order question"
    )
    conversation_id = opened.id
    for direction in ("inbound", "outbound"):
        await service.log_message(
            SALES, conversation_id, None, direction=direction, author="demo", content="..."
        )
    await service.change(
        SALES,
        "conversation.write",
        Conversation,
        conversation_id,
        lambda c, ctx: c.hand_off(ctx, to_department="support", to_agent="sven", note="billing"),
    )
    await service.change(
        SUPPORT,
        "conversation.write",
        Conversation,
        conversation_id,
        lambda c, ctx: c.close(ctx, outcome=rng.choice(("resolved", "unresolved", "escalated"))),
    )
    csat, nps = rng.choice((5, 5, 4, 4, 3, 2)), rng.choice((10, 9, 9, 8, 7, 5, 3))
    await service.change(
        CUSTOMER,
        "conversation.survey",
        Conversation,
        conversation_id,
        lambda c, ctx: c.rate_satisfaction(ctx, score=csat),
    )
    await service.change(
        CUSTOMER,
        "conversation.survey",
        Conversation,
        conversation_id,
        lambda c, ctx: c.score_recommendation(ctx, score=nps),
    )
    await _task_story(service, rng, customer_id, conversation_id)


async def _task_story(
    service: CommandService, rng: random.Random, customer_id: UUID, conversation_id: UUID
) -> None:
    created = await service.create_task(
        SUPPORT,
        customer_id,
        title="Follow up",
        conversation_id=conversation_id,
        priority=rng.choice(("low", "normal", "high")),
    )
    steps = [
        lambda t, ctx: t.assign(ctx, assignee="sven"),
        lambda t, ctx: t.start(ctx),
        lambda t, ctx: t.log_progress(ctx, note="called the customer", percent=50),
        lambda t, ctx: t.complete(ctx, resolution="refund issued"),
    ]
    for step in steps:
        await service.change(SUPPORT, "task.write", Task, created.id, step)
    score = rng.choice((5, 4, 4, 3))
    await service.change(
        SUPPORT_LEAD,
        "task.evaluate",
        Task,
        created.id,
        lambda t, ctx: t.evaluate(ctx, score=score, feedback="good"),
    )
