"""Right to be forgotten, as a command: a customer's erasure stored, then their data key
destroyed, and an erasure whose key outlived it finished.

The key is destroyed only AFTER the event is durable, so a failed save leaves the
customer readable and the request can be retried. Should destroying the key fail after
the event (the key store locked), the erasure is owed: marked so in the key store before
the event is saved (`Keyring.owe_erasure`, cleared with the key), so the API's sweep
finishes it if nobody retries (`services.erasure_sweep`), and a retry finishes it at
once: an erased customer whose key the store still holds is no 409, the key is destroyed
and the answer is the stored erasure's (no second `CustomerErased`). The keyed request
that stored it gets that answer after the sweep too (`_owed_erasure`).
I/O: the event store and the keyring, through the `CommandService`.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from domain.customer import Customer, CustomerErasedError
from services.access.resources import resource_of
from services.commands import Caller, CommandResult, CommandService
from services.customer_commands import EraseCustomer
from services.event_positions import event_position


async def erase_customer(
    service: CommandService,
    caller: Caller,
    target: UUID,
    command: EraseCustomer,
    expected: int | None,
) -> CommandResult:
    """Erase customer `target` (`expected`: the version If-Match named), or finish an
    erasure stored before whose key the store still holds."""
    service.access.before_target(caller.principal, command.rules())  # nothing owed if refused
    await asyncio.to_thread(service.keyring.owe_erasure, target)
    try:
        result = await service.change(caller, target, command, expected=expected)
    except CustomerErasedError as refused:
        result = await _owed_erasure(service, caller, target, command, refused)
    await asyncio.to_thread(service.keyring.erase, target)
    service.cache.clear()  # no cached state of the erased customer outlives its key
    return result


async def _owed_erasure(
    service: CommandService,
    caller: Caller,
    target: UUID,
    command: EraseCustomer,
    refused: CustomerErasedError,
) -> CommandResult:
    """The answer of a stored erasure whose key the store still holds, for its caller to
    finish it. Once the key is destroyed, the answer of the keyed request that stored
    the erasure, retried (`_stored_by`): the API's sweep may have destroyed the key
    before the client's retry, which got 200 or 409 depending on which came first;
    `refused` (409) for anyone else. `If-Match` is not compared: finishing stores
    nothing, and the answer is the erasure's as stored."""
    customer = await service.load(Customer, target)
    service.access.finishing_erasure(caller.principal, command.rules(), resource_of(customer))
    version = customer.version  # its erasure: nothing is stored after one
    if not customer.erased or (
        await asyncio.to_thread(service.keyring.destroyed, target)
        and not await _stored_by(service, caller, target, version)
    ):
        raise refused
    app = service.app
    position = await asyncio.to_thread(event_position, app.recorder, target, version)
    return CommandResult(id=target, version=version, position=position)


async def _stored_by(service: CommandService, caller: Caller, target: UUID, version: int) -> bool:
    """Whether `caller`'s keyed request stored `target`'s event at `version` (read
    sealed: only its metadata is compared)."""
    app = service.app
    stored = await asyncio.to_thread(app.sealed_history, target, after=version - 1, limit=1)
    return bool(stored) and caller.emitted(stored[0])
