"""Erasures left half-done, finished by the API: at start-up and every `SWEEP_SECONDS`.

An erasure stores its `CustomerErased` event, then destroys the customer's data key
(`services.erasure_command`). Should the destruction fail (the key store locked or
out of reach) and nobody retry, the key would outlive the erasure for good. So the
command marks the erasure owed in the key store before it saves the event
(`KeyStore.owe_erasure`), and destroying the key clears the mark.

A sweep reads the marks (a table empty but for erasures in flight or left half-done)
and, for each, the customer's newest stored event (one indexed row): a `CustomerErased`
and the key is destroyed, logged once; anything else and the erasure was never stored
(its save failed, or its process died first), so the mark is dropped once it is older
than `GRACE_SECONDS` (an erasure in flight, here or in another process, keeps its own).

Why marks rather than a look at the log: nothing indexes events by type, so finding
every `CustomerErased` whose key survived would read the whole log at each start-up.
The price is one more key-store write per erasure, before its event: a key store that
is locked then fails the erasure before anything is stored (a 503, retried). Erasures
left half-done before the marks existed have none: a retry of the erasure finishes them.

A sweep that fails (the store locked, PostgreSQL restarting) is logged once and tried
again every `SWEEP_SECONDS`.
I/O: the key store (through the keyring) and the event store, on a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import UUID

import structlog

from consumers.keyring import Keyring
from domain import codec
from domain.customer import CustomerErased
from services.event_store import CrmApplication
from services.periodic import Periodic

SWEEP_SECONDS = 30.0
GRACE_SECONDS = 3600.0
"""How old a mark whose erasure is not stored must be before it is dropped: far longer
than any save takes, so an erasure still in flight is never left without one."""
log = structlog.get_logger("crm.erasure_sweep")


def erasure_stored(app: CrmApplication, customer: UUID) -> bool:
    """Whether the customer's newest stored event is its erasure (nothing follows one)."""
    newest = app.recorder.select_events(customer, desc=True, limit=1)
    return bool(newest) and issubclass(codec.parse_topic(newest[0].topic)[0], CustomerErased)


def finish_owed_erasures(app: CrmApplication, keyring: Keyring) -> set[UUID]:
    """One sweep: the customers whose stored erasure it finished (their keys destroyed)."""
    finished = set()
    for customer in keyring.store.owed_erasures():
        if erasure_stored(app, customer):
            keyring.erase(customer)
            log.warning("erasure finished: its key had outlived its event", customer=str(customer))
            finished.add(customer)
        else:
            keyring.store.drop_owed_erasure(customer, GRACE_SECONDS)
    return finished


class ErasureSweep(Periodic):
    def __init__(
        self,
        app: CrmApplication,
        keyring: Keyring,
        on_erased: Callable[[set[UUID]], None],
        interval: float = SWEEP_SECONDS,
    ) -> None:
        """`on_erased`: told the customers a sweep erased, to drop what this process
        holds of them (as the command would have)."""
        self._app = app
        self._keyring = keyring
        self._on_erased = on_erased
        super().__init__(interval, "erasure sweep", log)

    async def step(self) -> set[UUID]:
        return await self.sweep()

    async def sweep(self) -> set[UUID]:
        finished = await asyncio.to_thread(finish_owed_erasures, self._app, self._keyring)
        if finished:
            self._on_erased(finished)
        return finished
