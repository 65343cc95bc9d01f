"""The console tests' seeded scenario: known survey answers on known days, a queue, a
task board, a masked customer, a support-only customer and a renamed one.

Written through the command service (the same decisions and sealing as the API) into
an embedded data directory before `crm run` starts on it. Commands carry the instant
the scenario gives them (`At`), so the satisfaction buckets are fixed days, weeks and
months rather than "today".
I/O: the SQLite event store, key store and principals in `data_dir`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import msgspec

from domain.base import Context
from services import conversation_commands as vc
from services import customer_commands as cc
from services import task_commands as tc
from services.access.rules import Principal, Role
from services.bootstrap import bootstrap
from services.commands import Caller, CommandService
from services.group_commit import DirectCommitter
from services.principals_store import open_principals
from services.settings import load_settings

DAY1 = datetime(2025, 3, 3, 10, tzinfo=UTC)  # Monday of ISO week 2025-W10
DAY2 = datetime(2025, 3, 5, 15, tzinfo=UTC)  # same week and month
DAY3 = datetime(2025, 4, 8, 9, tzinfo=UTC)  # 2025-W15, another month

SUPPORT_ANSWERS = {  # day -> [(CSAT 1-5, NPS 0-10)], credited to support / sven
    DAY1: [(5, 10), (4, 9), (2, 3)],
    DAY2: [(5, 6), (5, 8)],
    DAY3: [(1, 0)],
}
SALES_ANSWERS = {DAY1: [(3, 9)]}  # credited to sales / sara

PRINCIPALS = {  # name -> (department, role)
    "ana": ("marketing", "analyst"),
    "aud": ("support", "auditor"),
    "sam": ("sales", "agent"),
    "sue": ("support", "agent"),
}


class At(Caller, frozen=True, kw_only=True):
    """A caller whose commands happen at `at` instead of now."""

    at: datetime

    def context(self) -> Context:
        return msgspec.structs.replace(super().context(), occurred_at=self.at)


def caller(name: str, department: str, role: Role, at: datetime) -> At:
    principal = Principal(name=name, department=department, role=role)
    return At(principal=principal, correlation_id=f"scenario-{name}", at=at)


@dataclass
class Scenario:
    """Ids and tokens the tests look for."""

    tokens: dict[str, str] = field(default_factory=dict)
    masked_customer: UUID | None = None  # sales-owned, shared with support, has email/phone
    support_only: UUID | None = None  # owned by support, shared with nobody
    renamed: UUID | None = None  # "Ada Lovelace" on DAY1, "Ada King" from DAY2
    overdue_task: UUID | None = None
    future_task: UUID | None = None
    queue: list[str] = field(default_factory=list)  # open conversation subjects, longest first

    def token(self, name: str) -> str:
        return self.tokens[name]


def seed(data_dir: Path, now: datetime) -> Scenario:
    """Write the scenario into the embedded store in `data_dir`; `now` anchors the board."""
    runtime = bootstrap(load_settings({"CRM_DATA_DIR": str(data_dir)}))
    try:
        committer = DirectCommitter(runtime.app)
        service = CommandService(runtime.app, committer, runtime.keyring, access=runtime.access)
        scenario = asyncio.run(_seed(service, now))
        principals = open_principals(runtime.pool, data_dir)
        for name, (department, role) in PRINCIPALS.items():
            scenario.tokens[name] = principals.add(name, department, role)
    finally:
        runtime.close()
    return scenario


async def _seed(service: CommandService, now: datetime) -> Scenario:
    scenario = Scenario()
    sara = caller("sara", "sales", Role.AGENT, DAY1 - timedelta(days=1))
    shared = await _customer(service, sara, "Grace Hopper", shared_with="support")
    scenario.masked_customer = shared
    await _surveys(service, shared, "support", "sven", SUPPORT_ANSWERS)
    await _surveys(service, shared, "sales", "sara", SALES_ANSWERS)
    sven = caller("sven", "support", Role.AGENT, DAY1)
    scenario.support_only = await _customer(service, sven, "Linus Torvalds", shared_with=None)
    scenario.renamed = await _customer(service, sara, "Ada Lovelace", shared_with="support")
    rename = cc.UpdateProfile(name="Ada King")
    await service.change(caller("sara", "sales", Role.AGENT, DAY2), scenario.renamed, rename)
    await _board(service, scenario, shared, now)
    return scenario


async def _customer(
    service: CommandService, who: At, name: str, *, shared_with: str | None
) -> UUID:
    first = name.split(maxsplit=1)[0].lower()
    registration = cc.RegisterCustomer(
        name=name, company="ACME", email=f"{first}@example.com", phone="+442071234567"
    )
    created = await service.create(who, registration)
    if shared_with is not None:
        later = msgspec.structs.replace(who, at=who.at + timedelta(minutes=1))
        await service.change(later, created.id, cc.ShareCustomer(department=shared_with))
    return created.id


async def _surveys(
    service: CommandService,
    customer: UUID,
    department: str,
    agent: str,
    answers: dict[datetime, list[tuple[int, int]]],
) -> None:
    """One closed conversation per answer pair, handled by `agent` of `department`."""
    for day, pairs in answers.items():
        for csat, nps in pairs:
            staff = caller(agent, department, Role.AGENT, day)
            opening = vc.OpenConversation(
                customer_id=customer, channel="email", subject="Survey", agent=agent
            )
            opened = await service.create(staff, opening)
            await service.change(staff, opened.id, vc.CloseConversation(outcome="resolved"))
            bot = caller("survey-bot", "marketing", Role.SERVICE, day)
            await service.change(bot, opened.id, vc.RateSatisfaction(score=csat))
            await service.change(bot, opened.id, vc.ScoreRecommendation(score=nps))


async def _board(
    service: CommandService, scenario: Scenario, customer: UUID, now: datetime
) -> None:
    """Two open support conversations (waiting 5 h and 1 h) and two open tasks, one
    overdue since yesterday and one due next year."""
    for hours, subject in ((5, "Refund still missing"), (1, "Invoice address wrong")):
        sven = caller("sven", "support", Role.AGENT, now - timedelta(hours=hours))
        opening = vc.OpenConversation(customer_id=customer, channel="chat", subject=subject)
        await service.create(sven, opening)
        scenario.queue.append(subject)
    sven = caller("sven", "support", Role.AGENT, now - timedelta(days=3))
    for title, due in (("Call back about refund", now - timedelta(days=1)),
                       ("Quarterly review", now + timedelta(days=365))):  # fmt: skip
        creation = tc.CreateTask(
            customer_id=customer, title=title, assignee="sven", due_at=due, priority="high"
        )
        created = await service.create(sven, creation)
        if due < now:
            scenario.overdue_task = created.id
            await service.change(sven, created.id, tc.StartTask())
        else:
            scenario.future_task = created.id
