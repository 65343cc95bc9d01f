"""A command seals its personal fields without a synchronous key query on the event loop:
the customer's data key, when the keyring no longer holds it, is fetched on the loop
before the decision (`CommandService(hold_keys=...)`), and tells the erasure too; a
registration's new key is made there too, before its events are sealed."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import pytest

from consumers.keyring import KEY_CACHE_SECONDS, Keyring, MemoryKeyStore
from domain.conversation import Conversation
from services.access.rules import Principal, Role
from services.api.loop_reads import event_source
from services.commands import Caller, CommandService
from services.conversation_commands import LogMessage, OpenConversation
from services.current_state import CurrentState
from services.customer_commands import RegisterCustomer, UpdateProfile
from services.event_store import CrmApplication
from services.group_commit import DirectCommitter
from tests.fake_clock import Clock

SERVICE = Caller(
    principal=Principal(name="svc", department="sales", role=Role.SERVICE), correlation_id="c"
)


class CountingKeys(MemoryKeyStore):
    """Counts the synchronous questions (`load`, `destroyed`: what `Keyring.encrypt` and
    `Keyring.is_erased` ask) apart from the batched one the loop reads ask."""

    def __init__(self) -> None:
        super().__init__()
        self.sync_queries = 0
        self.batched: list[list[UUID]] = []

    def reset(self) -> None:
        self.sync_queries, self.batched = 0, []

    def load(self, subject: UUID) -> bytes | None:
        self.sync_queries += 1
        return super().load(subject)

    def destroyed(self, subject: UUID) -> bool:
        self.sync_queries += 1
        return super().destroyed(subject)

    def load_many(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        self.batched.append(list(subjects))
        return {s: k for s, k in self._keys.items() if s in subjects}


def _service() -> tuple[CommandService, CountingKeys, Keyring, Clock]:
    keys, clock = CountingKeys(), Clock(1000.0)
    keyring = Keyring(keys, clock=clock)
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}, keyring)  # seals with it
    current = CurrentState(event_source(app, keys, None), keyring)
    service = CommandService(
        app, DirectCommitter(app), keyring, loader=current.rebuilt,
        catch_up=current.caught_up, hold_keys=current.hold_keys,
    )  # fmt: skip
    return service, keys, keyring, clock


async def _customer_with_conversation(service: CommandService) -> tuple[UUID, UUID]:
    customer = (await service.create(SERVICE, RegisterCustomer(name="Ada"))).id
    opened = OpenConversation(customer_id=customer, channel="email", subject="Hi")
    return customer, (await service.create(SERVICE, opened)).id


@pytest.mark.anyio
async def test_a_command_after_the_key_expired_fetches_it_on_the_loop_once() -> None:
    service, keys, _, clock = _service()
    customer, conversation = await _customer_with_conversation(service)
    message = LogMessage(direction="inbound", author="Ada", content="Hello")
    clock.now += KEY_CACHE_SECONDS + 1  # the keyring no longer trusts the key it held
    keys.reset()
    await service.change(SERVICE, conversation, message)
    assert (keys.sync_queries, keys.batched) == (0, [[customer]])
    clock.now += KEY_CACHE_SECONDS + 1
    keys.reset()
    await service.change(SERVICE, customer, UpdateProfile(email="ada@example.com"))
    assert (keys.sync_queries, keys.batched) == (0, [[customer]])


@pytest.mark.anyio
async def test_a_key_destroyed_elsewhere_shows_as_erased_to_the_access_model() -> None:
    service, keys, keyring, clock = _service()
    customer, conversation = await _customer_with_conversation(service)
    keys.destroy(customer)  # another process erased the customer
    clock.now += KEY_CACHE_SECONDS + 1
    aggregate = await service.load(Conversation, conversation)
    assert (await service.keys.resource(aggregate)).erased
    assert keyring.known_erased(customer) is True


@pytest.mark.anyio
async def test_a_registration_makes_its_customer_s_key_on_the_loop() -> None:
    service, keys, keyring, _ = _service()
    first = (await service.create(SERVICE, RegisterCustomer(name="Ada"))).id
    second = (await service.create(SERVICE, RegisterCustomer(name="Grace"))).id
    assert (keys.sync_queries, keys.batched) == (0, [[first], [second]])
    assert keyring.known_erased(first) is False  # held: the event was sealed with it
    made = keys.load(first), keys.load(second)
    assert None not in made
    assert made[0] != made[1]
