"""The batch insert refuses events about an erased customer, and only those, on
PostgreSQL and SQLite.

Under the table lock (SQLite: its write transaction), an event whose data subject's
newest stored event is `CustomerErased`, or whose subject's erasure comes earlier in the
same batch, refuses the batch (`ErasedSubjectError`, naming the refused events'
aggregates) with nothing stored; group commit fails those commands and saves the others
of the batch. An erasure itself, and events before it in its batch, are stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest

from domain.base import Aggregate
from domain.conversation import Conversation
from domain.customer import Customer
from services.access.rules import Principal, Role
from services.batch_refusals import ErasedSubjectError
from services.bootstrap import Runtime, bootstrap
from services.command_base import Change
from services.commands import Caller, CommandService
from services.conversation_commands import LogMessage, OpenConversation
from services.customer_commands import EraseCustomer, RegisterCustomer, UpdateProfile
from services.event_store import Saved
from services.group_commit import DirectCommitter, GroupCommitter
from services.settings import load_settings

AGENT = Caller(
    principal=Principal(name="sam", department="sales", role=Role.AGENT), correlation_id="c"
)
A = TypeVar("A", bound=Aggregate)
MESSAGE = LogMessage(direction="inbound", author="Bob", content="call me on +49 30 1234")


@pytest.fixture(params=["sqlite", "postgres"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """The event store on SQLite (one process: its write transaction is the lock; an
    erasure racing commands of the same process stored them after it) or PostgreSQL."""
    env = {"CRM_DATA_DIR": str(tmp_path)}
    if request.param == "postgres":
        env["CRM_DATABASE_URL"] = str(request.getfixturevalue("pg_url"))
    runtime = bootstrap(load_settings(env))
    yield runtime
    runtime.close()


def customers_with_conversations(runtime: Runtime, count: int) -> list[tuple[UUID, UUID]]:
    async def created() -> list[tuple[UUID, UUID]]:
        service = CommandService(runtime.app, DirectCommitter(runtime.app), runtime.keyring)
        made = []
        for n in range(count):
            customer = await service.create(AGENT, RegisterCustomer(name=f"C{n}"))
            opened = OpenConversation(customer_id=customer.id, channel="phone", subject="s")
            made.append((customer.id, (await service.create(AGENT, opened)).id))
        return made

    return asyncio.run(created())


def decided(runtime: Runtime, kind: type[A], target: UUID, command: Change[A]) -> A:
    """`target` loaded, with `command`'s events pending."""
    aggregate = runtime.app.sealed_load(kind, target)
    command.with_defaults(AGENT.principal).decide(aggregate, AGENT.context())
    return aggregate


def erased(runtime: Runtime, customer: UUID) -> None:
    runtime.app.record(decided(runtime, Customer, customer, EraseCustomer()))


def test_a_batch_with_an_event_about_an_erased_customer_stores_nothing(runtime: Runtime) -> None:
    (gone, talk), (kept, _) = customers_with_conversations(runtime, 2)
    erased(runtime, gone)
    head = runtime.app.head_position()
    batch = [
        decided(runtime, Customer, kept, UpdateProfile(company="x")),
        decided(runtime, Conversation, talk, MESSAGE),
    ]
    with pytest.raises(ErasedSubjectError) as refused:
        runtime.app.record(*batch)
    assert refused.value.aggregate_ids == {talk}
    assert runtime.app.head_position() == head


def test_an_erasure_refuses_what_follows_it_in_its_batch_not_what_precedes_it(
    runtime: Runtime,
) -> None:
    (first, first_talk), (second, second_talk) = customers_with_conversations(runtime, 2)
    before = decided(runtime, Conversation, first_talk, MESSAGE)
    runtime.app.record(before, decided(runtime, Customer, first, EraseCustomer()))
    assert runtime.app.load(Customer, first).erased
    head = runtime.app.head_position()
    erasure = decided(runtime, Customer, second, EraseCustomer())
    with pytest.raises(ErasedSubjectError) as refused:
        runtime.app.record(erasure, decided(runtime, Conversation, second_talk, MESSAGE))
    assert refused.value.aggregate_ids == {second_talk}
    assert runtime.app.head_position() == head


def test_group_commit_fails_only_the_commands_about_an_erased_customer(runtime: Runtime) -> None:
    (gone, talk), (_, kept_talk), (other, _) = customers_with_conversations(runtime, 3)
    erased(runtime, gone)
    sizes: list[int] = []

    async def saved() -> list[Saved | BaseException]:
        committer = GroupCommitter(
            runtime.app, window_ms=0, max_batch=16, on_batch=lambda n, _: sizes.append(n)
        )
        saves = [
            committer.save(decided(runtime, Conversation, talk, MESSAGE)),
            committer.save(decided(runtime, Conversation, kept_talk, MESSAGE)),
            committer.save(decided(runtime, Customer, other, UpdateProfile(company="x"))),
        ]
        try:  # queued together: a batch takes half of them, the first two
            return list(await asyncio.gather(*saves, return_exceptions=True))
        finally:
            await committer.aclose()

    refused, *others = asyncio.run(saved())
    assert sizes[0] == 2
    assert isinstance(refused, ErasedSubjectError)
    assert not any(isinstance(answer, BaseException) for answer in others)
    assert runtime.app.load(Conversation, talk).version == 1
    assert runtime.app.load(Conversation, kept_talk).version == 2
