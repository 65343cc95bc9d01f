"""Two API processes on one PostgreSQL: a customer erased through one, the other refuses
commands on her conversation at once, though its keyring still holds her key.

Red team: a process learns of another's erasure by its erasure watch, every half
second; meanwhile it accepted a message, a close and a CSAT answer on the erased
customer's conversation and stored them after `CustomerErased`. The batch insert now
refuses, under the table lock every process's writes take, events about a customer
whose newest stored event is her erasure: the command is a `CustomerErasedError` (409
`customer-erased`), nothing of it is stored, and a command on another customer beside
it is saved.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID

import pytest

from domain import codec
from domain.customer import CustomerErased, CustomerErasedError
from services.access.rules import Principal, Role
from services.bootstrap import Runtime, bootstrap
from services.commands import Caller, CommandService
from services.conversation_commands import CloseConversation, LogMessage, OpenConversation
from services.customer_commands import EraseCustomer, RegisterCustomer
from services.erasure_command import erase_customer
from services.group_commit import GroupCommitter
from services.settings import load_settings

AGENT = Caller(
    principal=Principal(name="sam", department="sales", role=Role.AGENT), correlation_id="c"
)
ADMIN = Caller(
    principal=Principal(name="ada", department="sales", role=Role.ADMIN), correlation_id="c"
)
MESSAGE = LogMessage(direction="inbound", author="Bob", content="call me on +49 30 1234")


@pytest.fixture
def runtimes(pg_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    """Two processes' runtimes: keyrings, event stores and caches of their own."""
    settings = load_settings({"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)})
    first, second = bootstrap(settings), bootstrap(settings)
    yield first, second
    first.close()
    second.close()


@asynccontextmanager
async def command_service(runtime: Runtime) -> AsyncIterator[CommandService]:
    """A process's command service, with group commit as the API runs it."""
    committer = GroupCommitter(runtime.app, window_ms=2, max_batch=16)
    try:
        yield CommandService(runtime.app, committer, runtime.keyring, access=runtime.access)
    finally:
        await committer.aclose()


async def customer_with_conversation(service: CommandService, name: str) -> tuple[UUID, UUID]:
    customer = await service.create(AGENT, RegisterCustomer(name=name, email="b@example.com"))
    opened = OpenConversation(customer_id=customer.id, channel="phone", subject="s")
    return customer.id, (await service.create(AGENT, opened)).id


def test_a_process_that_holds_the_key_refuses_commands_after_another_s_erasure(
    runtimes: tuple[Runtime, Runtime],
) -> None:
    first, second = runtimes

    async def scenario() -> tuple[UUID, UUID]:
        async with command_service(first) as erasing, command_service(second) as late:
            customer, conversation = await customer_with_conversation(erasing, "Bob")
            _, elsewhere = await customer_with_conversation(erasing, "Eve")
            await late.change(AGENT, conversation, MESSAGE)  # the late process holds her key
            await erase_customer(erasing, ADMIN, customer, EraseCustomer(), None)
            assert late.keyring.known_erased(customer) is False  # and still trusts it
            for command in (MESSAGE, CloseConversation(outcome="resolved")):
                with pytest.raises(CustomerErasedError):
                    await late.change(AGENT, conversation, command)
            refused, saved = await asyncio.gather(
                late.change(AGENT, conversation, MESSAGE),
                late.change(AGENT, elsewhere, MESSAGE),
                return_exceptions=True,
            )
            assert isinstance(refused, CustomerErasedError)
            assert not isinstance(saved, BaseException)
            return customer, conversation

    customer, conversation = asyncio.run(scenario())
    log = first.app.recorder.select_notifications(start=1, limit=1_000)
    about_her = [n for n in log if codec.sealed_event(n).data_subject == customer]
    assert issubclass(codec.parse_topic(about_her[-1].topic)[0], CustomerErased)
    assert [n.originator_version for n in about_her if n.originator_id == conversation] == [1, 2]
