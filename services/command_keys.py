"""What a command needs of the customers' data keys: whether its customer was erased,
the personal values its decision compares opened, and its events' keys held before
they are sealed.

Aggregates are loaded and cached sealed. A command opens only the personal values its
decision compares (`Change.compares`) and its caller may see. Before its aggregate goes
back to the cache, what it opened is set back to the sealed values it opened, and what
its events gave to the values its saved events hold, as the store sealed them once
(`Aggregate.personal_targets`, `services.sealed_state`): plaintext lives in the memory
of the request that sent it, or may see it, and no longer, and the cache holds what a
sealed load would.

With `hold_keys` (`CurrentState.hold_keys`) a customer's data key the keyring does not
hold is fetched on the event loop, before the decision (it tells the erasure too) and
before sealing (a registration's new key made there): `Keyring.encrypt` is synchronous
and would block the loop for a query. Without it, a key is fetched on a worker thread.
I/O: the keyring (its key store), as above.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol
from uuid import UUID

from consumers.keyring import Keyring
from domain.base import Aggregate, DomainEvent
from domain.customer import Customer
from services.access.resources import Resource, resource_of
from services.sealed_state import Path, open_at


class HoldKeys(Protocol):
    async def __call__(self, subjects: Iterable[UUID], *, create: bool = False) -> None:
        """Has the keyring hold the data keys of some customers (or know them
        destroyed); with `create`, makes those that have none."""
        ...


class CommandKeys:
    """The keyring as commands use it, fetching keys on the loop with `hold_keys`."""

    def __init__(self, keyring: Keyring, hold_keys: HoldKeys | None = None) -> None:
        self.keyring = keyring
        self._hold_keys = hold_keys

    async def resource(self, aggregate: Aggregate) -> Resource:
        """The aggregate as the access model sees it; a conversation's or task's customer
        erasure comes from the keyring (cached once known, so rarely a query).

        With `hold_keys`, the customer's data key is fetched on the loop when the keyring
        does not hold it, for a customer's own commands too: sealing the decision's
        personal fields then needs no query."""
        customer_id = subject_of(aggregate)
        if customer_id is None:
            return resource_of(aggregate)
        erased = self.keyring.known_erased(customer_id)
        if erased is None and self._hold_keys is not None:
            await self._hold_keys((customer_id,))
            erased = self.keyring.known_erased(customer_id) is True  # no key yet: none destroyed
        if isinstance(aggregate, Customer):
            return resource_of(aggregate)  # its erasure is one of its own events
        if erased is None:
            erased = await asyncio.to_thread(self.keyring.is_erased, customer_id)
        return resource_of(aggregate, erased=erased)

    async def opened(self, aggregate: Aggregate, paths: tuple[Path, ...]) -> dict[Path, str]:
        """Opens, in place, the personal values at `paths` (those a decision compares and
        its caller may see). The sealed values opened, by path."""
        if not paths or (subject := subject_of(aggregate)) is None:
            return {}
        if self.keyring.known_erased(subject) is not False:  # its key is not held yet
            if self._hold_keys is None:  # the keyring may fetch it: on a worker thread
                return await asyncio.to_thread(open_at, self.keyring, aggregate, subject, paths)
            await self._hold_keys((subject,))
        return open_at(self.keyring, aggregate, subject, paths)

    async def hold_for_sealing(self, events: Iterable[DomainEvent]) -> None:
        """With `hold_keys`, the keys that seal `events` held (made where none is), so
        sealing them needs no key query on the loop."""
        if self._hold_keys is not None:
            await self._hold_keys(_subjects(events), create=True)


def sealed_values(aggregate: Aggregate, events: Iterable[DomainEvent]) -> dict[Path, str | None]:
    """Where the aggregate's state holds the personal values of `events` (applied to it,
    in order), and those values as the events hold them."""
    return {
        path: getattr(event, path[-1])
        for event in events
        for path in aggregate.personal_targets(event)
    }


def subject_of(aggregate: Aggregate) -> UUID | None:
    """Whose key seals the aggregate's personal fields: a customer's own, or that of
    the customer a conversation or task belongs to."""
    if isinstance(aggregate, Customer):
        return aggregate.id
    customer_id: UUID | None = getattr(aggregate, "customer_id", None)
    return customer_id


def _subjects(events: Iterable[DomainEvent]) -> set[UUID]:
    """The customers whose data keys seal these events' personal fields."""
    return {event.data_subject for event in events if event.personal_fields}
