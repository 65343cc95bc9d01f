"""`crm demo`: a realistic scenario loaded through the command service.

Sales registers customers and records orders, support runs conversations with
hand-offs between departments, tasks are worked, completed and evaluated by managers,
and customers answer CSAT/NPS surveys. Deterministic (seeded), so two demos give the
same story. Shows a rich progress bar.
"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from uuid import UUID

from rich.progress import Progress

from services import conversation_commands as vc
from services import customer_commands as cc
from services import task_commands as tc
from services.access.rules import Principal, Role
from services.bootstrap import Runtime
from services.commands import Caller, CommandService
from services.group_commit import DirectCommitter

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
    committer = DirectCommitter(runtime.app)
    service = CommandService(runtime.app, committer, runtime.keyring, access=runtime.access)
    rng = random.Random(seed)
    with Progress() as progress:
        bar = progress.add_task("loading demo customers", total=customers)
        for number in range(customers):
            await _customer_story(service, rng, number)
            progress.advance(bar)


async def _customer_story(service: CommandService, rng: random.Random, number: int) -> None:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    registration = cc.RegisterCustomer(
        name=f"{first} {last}",
        company=rng.choice(COMPANIES),
        email=f"{first}.{last}.{number}@example.com".lower(),
        phone=f"+4420{rng.randrange(10**7, 10**8)}",
        tags=rng.sample(TAGS, 2),
        consents={"email_marketing": rng.random() < 0.6},
    )
    customer = (await service.create(SALES, registration)).id
    await service.change(SALES, customer, cc.ShareCustomer(department="support"))
    for order in range(rng.randrange(0, 3)):
        amount = Decimal(rng.randrange(1000, 500000)) / 100
        placed = cc.RecordOrder(order_id=f"SO-{number}-{order}", amount=amount, currency="EUR")
        await service.change(SALES, customer, placed)
    if rng.random() < 0.7:
        await _conversation_story(service, rng, customer)


async def _conversation_story(
    service: CommandService, rng: random.Random, customer_id: UUID
) -> None:
    """Sales hears a problem, hands it to support, support solves it, the customer rates."""
    channel = rng.choice(("email", "phone", "chat"))
    opening = vc.OpenConversation(
        customer_id=customer_id, channel=channel, subject="Order question"
    )
    conversation = (await service.create(SALES, opening)).id
    for direction in ("inbound", "outbound"):
        message = vc.LogMessage(direction=direction, author="demo", content="...")
        await service.change(SALES, conversation, message)
    handing = vc.HandOff(to_department="support", to_agent="sven", note="billing")
    await service.change(SALES, conversation, handing)
    outcome = rng.choice(("resolved", "unresolved", "escalated"))
    await service.change(SUPPORT, conversation, vc.CloseConversation(outcome=outcome))
    csat, nps = rng.choice((5, 5, 4, 4, 3, 2)), rng.choice((10, 9, 9, 8, 7, 5, 3))
    await service.change(CUSTOMER, conversation, vc.RateSatisfaction(score=csat))
    await service.change(CUSTOMER, conversation, vc.ScoreRecommendation(score=nps))
    await _task_story(service, rng, customer_id, conversation)


async def _task_story(
    service: CommandService, rng: random.Random, customer_id: UUID, conversation_id: UUID
) -> None:
    creation = tc.CreateTask(
        customer_id=customer_id,
        title="Follow up",
        conversation_id=conversation_id,
        priority=rng.choice(("low", "normal", "high")),
    )
    task = (await service.create(SUPPORT, creation)).id
    steps = [
        tc.AssignTask(assignee="sven"),
        tc.StartTask(),
        tc.LogProgress(note="called the customer", percent=50),
        tc.CompleteTask(resolution="refund issued"),
    ]
    for step in steps:
        await service.change(SUPPORT, task, step)
    evaluation = tc.EvaluateTask(score=rng.choice((5, 4, 4, 3)), feedback="good")
    await service.change(SUPPORT_LEAD, task, evaluation)
