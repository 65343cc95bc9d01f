"""Aggregates as stored now, for reads, on the event loop: one small query per read.

A read of current state (`GET` of a customer, conversation or task, and the access
checks of history and timeline reads) used to rebuild the aggregate from its whole
history on a worker thread: a thread hop (the loop and the worker then contend for the
GIL) plus decoding and decrypting every event, every time. Here:

* the store is asked only for the events newer than what this process already holds
  (`EventSource.events_after`): on PostgreSQL an awaited query on the loop
  (`services.pg_reads`), on SQLite a local query run on the loop itself;
* customers are kept, as of their last read, in a bounded LRU (`max_size`), and each read
  applies just the new events. Always current, across processes too: every read asks the
  store what is newer, so nothing is trusted stale. Only customers are kept because their
  erasure is one of their own events (it blanks their personal fields as it is applied);
  a conversation's or task's personal fields belong to its customer's key, whose
  destruction no event of theirs records, so they are rebuilt at every read;
* the data keys needed to open personal fields are fetched without blocking the loop
  when this process does not hold them yet (`EventSource.keys`), then kept by the keyring.

Readers get the cached object itself: they must not change it, and they build their
answer from it before awaiting anything else (the loop runs one coroutine at a time).
I/O: through its `EventSource`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from consumers.keyring import Keyring
from domain import codec
from domain.base import Aggregate, DomainEvent, NotFound
from domain.customer import Customer

A = TypeVar("A", bound=Aggregate)


class EventSource(Protocol):
    async def events_after(self, aggregate_id: UUID, version: int) -> Sequence[StoredEvent]:
        """The aggregate's stored events with a version above `version`, oldest first."""
        ...

    async def keys(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        """Data keys of those subjects that have a row: the key, or None once destroyed."""
        ...


class CurrentState:
    def __init__(self, source: EventSource, keyring: Keyring, max_size: int = 10_000) -> None:
        self._source = source
        self._keyring = keyring
        self._max_size = max_size
        self._customers: OrderedDict[UUID, Customer] = OrderedDict()

    async def load(self, kind: type[A], aggregate_id: UUID) -> A:
        """The aggregate with every event stored so far; `NotFound` if there is none of
        that kind."""
        cached = self._customers.get(aggregate_id) if kind is Customer else None
        known = 0 if cached is None else cached.version
        stored = await self._source.events_after(aggregate_id, known)
        aggregate: Aggregate | None = self._customers.get(aggregate_id, cached)
        newer = [s for s in stored if aggregate is None or s.originator_version > aggregate.version]
        for event in await self._opened(newer):
            aggregate = event.mutate(aggregate)
        if not isinstance(aggregate, kind):
            raise NotFound(kind.aggregate_type, aggregate_id)
        if isinstance(aggregate, Customer):
            self._keep(aggregate)
        return aggregate

    def forget(self, aggregate_id: UUID) -> None:
        """Drop a kept customer (this process erased it: nothing of its plaintext stays)."""
        self._customers.pop(aggregate_id, None)

    def _keep(self, customer: Customer) -> None:
        self._customers[customer.id] = customer
        self._customers.move_to_end(customer.id)
        if len(self._customers) > self._max_size:
            self._customers.popitem(last=False)

    async def _opened(self, stored: Sequence[StoredEvent]) -> list[DomainEvent]:
        """Decoded with the one codec, then opened once the keys they need are held."""
        sealed = [_decoded(s) for s in stored]
        subjects = {e.data_subject for e in sealed if e.personal_fields}
        missing = self._keyring.missing(subjects)
        if missing:
            for subject, key in (await self._source.keys(missing)).items():
                self._keyring.remember(subject, key)
        return [codec.unseal(event, self._keyring) for event in sealed]


def _decoded(stored: StoredEvent) -> DomainEvent:
    """What `CodecMapper.to_domain_event` does before it unseals."""
    cls, version = codec.parse_topic(stored.topic)
    return codec.decode(cls, stored.state, version)
