"""An erasure whose key outlived its event is finished, by a retry or by the sweep.

The command stores `CustomerErased`, then destroys the customer's data key; when the
destruction fails, the erasure stays owed (marked in the key store before the event).
A retry destroys the key and answers as the erasure did, storing nothing; once the key
is destroyed, erasing again is the 409 every command on an erased customer gets, but
for the keyed request that stored the erasure, retried. The API's sweep
(`services.erasure_sweep`) finishes an owed erasure nobody retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import UUID, uuid4

import msgspec
import pytest
from structlog.testing import capture_logs

from consumers.keyring import Keyring, MemoryKeyStore
from domain.customer import CustomerErased, CustomerErasedError
from services.access.rules import Forbidden, Principal, Role
from services.commands import Caller, CommandResult, CommandService
from services.customer_commands import EraseCustomer, RegisterCustomer
from services.erasure_command import erase_customer
from services.erasure_sweep import GRACE_SECONDS, finish_owed_erasures
from services.event_store import CrmApplication
from services.group_commit import DirectCommitter
from tests.fake_clock import Clock


def caller(role: Role) -> Caller:
    return Caller(
        principal=Principal(name=f"{role.value}-1", department="sales", role=role),
        correlation_id="c",
    )


ADMIN, SERVICE = caller(Role.ADMIN), caller(Role.SERVICE)
ERASE = EraseCustomer(reason="asked")


class LockedOnce(MemoryKeyStore):
    """A key store whose next `destroy` fails, as a locked one does (the key kept)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.locked = False

    def destroy(self, subject: UUID) -> None:
        if self.locked:
            self.locked = False
            raise TimeoutError("the key store is locked")
        super().destroy(subject)


def _service() -> tuple[CommandService, LockedOnce, Clock]:
    clock = Clock(1000.0)
    keys = LockedOnce(clock)
    keyring = Keyring(keys)
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}, keyring)
    return CommandService(app, DirectCommitter(app), keyring), keys, clock


async def _half_erased(service: CommandService, keys: LockedOnce) -> UUID:
    """A customer whose erasure is stored and whose key its destruction could not destroy."""
    customer = (await service.create(SERVICE, RegisterCustomer(name="Ada"))).id
    keys.locked = True
    with pytest.raises(TimeoutError):
        await erase_customer(service, ADMIN, customer, ERASE, None)
    return customer


def _erasures(service: CommandService, customer: UUID) -> int:
    return sum(isinstance(e, CustomerErased) for e in service.app.history(customer))


def test_a_retried_erasure_destroys_the_key_and_answers_as_the_erasure_did() -> None:
    async def scenario() -> None:
        service, keys, _ = _service()
        customer = await _half_erased(service, keys)
        assert service.app.history(customer)[-1].wire_name() == "CustomerErased"
        assert keys.load(customer) is not None
        assert keys.owed_erasures() == [customer]

        retried = await erase_customer(service, ADMIN, customer, ERASE, expected=1)
        assert retried == CommandResult(id=customer, version=2, position=2)
        assert keys.destroyed(customer)
        assert keys.owed_erasures() == []
        assert _erasures(service, customer) == 1  # nothing stored twice

        with pytest.raises(CustomerErasedError):  # the key is gone: as for any command
            await erase_customer(service, ADMIN, customer, ERASE, None)
        assert _erasures(service, customer) == 1
        assert keys.owed_erasures() == []  # the refused retry owes nothing

    asyncio.run(scenario())


def test_only_who_may_erase_finishes_an_erasure() -> None:
    async def scenario() -> None:
        service, keys, _ = _service()
        customer = await _half_erased(service, keys)
        with pytest.raises(Forbidden):
            await erase_customer(service, SERVICE, customer, ERASE, None)
        assert not keys.destroyed(customer)

    asyncio.run(scenario())


def test_a_refused_erasure_owes_nothing() -> None:
    async def scenario() -> None:
        service, keys, _ = _service()
        customer = (await service.create(SERVICE, RegisterCustomer(name="Ada"))).id
        with pytest.raises(Forbidden):
            await erase_customer(service, SERVICE, customer, ERASE, None)
        assert keys.owed_erasures() == []

    asyncio.run(scenario())


def test_the_sweep_finishes_an_erasure_nobody_retried() -> None:
    async def scenario() -> None:
        service, keys, _ = _service()
        customer = await _half_erased(service, keys)
        with capture_logs() as logs:
            assert finish_owed_erasures(service.app, service.keyring) == {customer}
            assert finish_owed_erasures(service.app, service.keyring) == set()  # once
        assert [(e["log_level"], e["customer"]) for e in logs] == [("warning", str(customer))]
        assert keys.destroyed(customer)
        assert service.keyring.known_erased(customer) is True
        assert _erasures(service, customer) == 1

    asyncio.run(scenario())


def test_the_sweep_drops_an_owed_erasure_never_stored_once_past_the_grace() -> None:
    """Its save failed, or its process died before it: the customer keeps its key. A
    younger one may be in flight (here or in another process) and stays owed."""
    service, keys, clock = _service()
    customer = uuid4()
    keys.owe_erasure(customer)
    assert finish_owed_erasures(service.app, service.keyring) == set()
    assert keys.owed_erasures() == [customer]
    clock.now += GRACE_SECONDS + 1
    assert finish_owed_erasures(service.app, service.keyring) == set()
    assert keys.owed_erasures() == []
    assert not keys.destroyed(customer)


def keyed(who: Caller, key: str, event_key: str) -> Caller:
    """`who` under Idempotency-Key `key`, its events carrying `event_key`."""
    return msgspec.structs.replace(
        who, idempotency_key=key, reservation=uuid4(), event_key=event_key
    )


def test_the_keyed_erasure_retried_after_the_sweep_answers_as_the_erasure_did() -> None:
    """The sweep (every 30 s, in every API process) destroyed the key before the client's
    retry of the erasure answered 503: that retry was a 409 `customer-erased`, and a 200
    had the retry come first. Its own request (its principal, its key) is answered as
    the erasure was; anyone else, the same principal unkeyed or with another key, and
    another principal with the same key, gets the 409."""

    async def scenario() -> None:
        service, keys, _ = _service()
        customer = (await service.create(SERVICE, RegisterCustomer(name="Ada"))).id
        first = keyed(ADMIN, "e-1", "hmac:" + "1" * 32)
        keys.locked = True
        with pytest.raises(TimeoutError):
            await erase_customer(service, first, customer, ERASE, None)
        assert finish_owed_erasures(service.app, service.keyring) == {customer}
        other_admin = Caller(
            principal=Principal(name="admin-2", department="sales", role=Role.ADMIN),
            correlation_id="c",
        )
        for anyone_else in (
            ADMIN,
            keyed(ADMIN, "e-2", "hmac:" + "2" * 32),
            keyed(other_admin, "e-1", "hmac:" + "1" * 32),
        ):
            with pytest.raises(CustomerErasedError):
                await erase_customer(service, anyone_else, customer, ERASE, None)
        retried = await erase_customer(service, first, customer, ERASE, None)
        assert retried == CommandResult(id=customer, version=2, position=2)
        assert _erasures(service, customer) == 1
        assert keys.owed_erasures() == []

    asyncio.run(scenario())


def test_an_erasure_stored_with_the_key_as_sent_is_its_retry_s_too() -> None:
    """Releases before digests stored the key as sent (`emitted_under`, as recovery)."""

    async def scenario() -> None:
        service, keys, _ = _service()
        customer = (await service.create(SERVICE, RegisterCustomer(name="Ada"))).id
        keys.locked = True
        with pytest.raises(TimeoutError):
            await erase_customer(service, keyed(ADMIN, "e-1", "e-1"), customer, ERASE, None)
        finish_owed_erasures(service.app, service.keyring)
        retried = await erase_customer(
            service, keyed(ADMIN, "e-1", "hmac:" + "1" * 32), customer, ERASE, None
        )
        assert retried.version == 2

    asyncio.run(scenario())
