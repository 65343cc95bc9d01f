"""Aggregates as stored now, for reads, on the event loop: one small query per read.

A read of current state (`GET` of a customer, conversation or task, and the access
checks of history and timeline reads) used to rebuild the aggregate from its whole
history on a worker thread: a thread hop (the loop and the worker then contend for the
GIL) plus decoding and decrypting every event, every time. Here:

* the store is asked only for the events newer than what this process already holds
  (`EventSource.events_after`), a page at a time (`READ_PAGE`): on PostgreSQL an
  awaited query on the loop (`services.pg_reads`), on SQLite a local query run on the
  loop itself. However long a history grows (a customer's has no bound), it is never
  held whole, and other requests are served between its pages;
* aggregates are kept, as of their last read, in an LRU bounded in number (`max_size`)
  and in the bytes they hold by their own estimate (`KEPT_BYTES`,
  `Aggregate.held_bytes`: a customer of 10,000 orders holds ~6 MB, a conversation of
  3,500 short messages ~2 MB), and each read applies just the new events. Always
  current, across processes too: every read asks the store what is newer, so nothing is
  trusted stale. They are kept sealed, so an erasure needs nothing of them: a
  customer's is one of its own events (it blanks its personal fields as it is applied),
  and a conversation's or task's values open with their customer's key as the keyring
  holds it at each read, so a destroyed key opens them as `ERASED`. A command whose
  cache let its aggregate go gets a copy of the kept one (`rebuilt`);
* a read from nothing (an aggregate's first read in a process, after a restart or once
  it left the kept ones) costs about a page however long the history: it starts from
  the aggregate's newest snapshot (`domain.snapshot`), if in this code's shape, asked
  for together with the page of events after it (`EventSource.from_snapshot`). A read
  that leaves an aggregate `SNAPSHOT_EVERY` versions past its newest snapshot known
  stores a new one in place of the older (a query per so many versions; a snapshot the
  store cannot take is logged and the read goes on). A snapshot holds the state as a
  load gives it: sealed, no plaintext;
* what a read loads holds its personal fields sealed, as stored: events are applied
  unopened, so no plaintext outlives the request that showed it, and a read opens only
  the fields its caller may see, of the current state only (not of every event): a copy
  of a kept customer (`opened`), a conversation's or task's view (`opener`). An erased
  customer's fields open as `ERASED`, its key gone, whether or not this process has
  applied its erasure yet;
* the data keys needed to open personal fields are fetched without blocking the loop
  when this process does not hold them yet (`EventSource.keys`), then kept by the keyring.

Readers get the kept object itself: they must not change it, and nothing else does. A
read that finds newer events applies them to a copy, which it keeps in its place, so a
reader may build its answer across awaits or on a worker thread (a long conversation's).
I/O: through its `EventSource`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import NamedTuple, TypeVar
from uuid import UUID

import msgspec
import structlog
from eventsourcing.persistence import StoredEvent

from consumers.keyring import Keyring, new_data_key
from domain import codec
from domain.base import Aggregate, NotFound
from domain.customer import Customer
from domain.snapshot import TAGS, restored
from domain.snapshot import snapshot as snapshot_of
from services.event_source import After, EventSource
from services.event_store import READ_PAGE, applied
from services.gathered_queries import Asked, Direct, Gathered
from services.held import Held
from services.sealed_state import open_at, top_level

A = TypeVar("A", bound=Aggregate)
log = structlog.get_logger("crm.current_state")
KEPT_BYTES = 128 * 2**20
"""The most the kept aggregates may hold, by their own estimate (see above); the API sets
it from `CRM_CACHE_MB`."""
SNAPSHOT_EVERY = READ_PAGE
"""A read that leaves an aggregate this many versions past its newest snapshot stores a
new one: a later read of it from nothing reads the snapshot and the events after it."""


class _Kept(NamedTuple):
    aggregate: Aggregate  # never changed once kept: a newer state is a new object
    head: int  # the store's head when a read last asked for this aggregate's new events
    snapshot: int  # the version of its newest snapshot known here (0: none)


class CurrentState:
    def __init__(
        self,
        source: EventSource,
        keyring: Keyring,
        max_size: int = 10_000,
        max_bytes: int = KEPT_BYTES,
        *,
        local: bool = False,
    ) -> None:
        """`local`: `source` answers without awaiting anything (`Direct`)."""
        self._source = source
        self._keyring = keyring
        self._kept: Held[UUID, _Kept] = Held(max_size, max_bytes)
        asked = Direct if local else Gathered
        self._heads: Asked[None, int] = asked(self._head_each)
        self._catch_ups: Asked[After, Sequence[StoredEvent]] = asked(self._first_pages)

    @property
    def held(self) -> int:
        """The bytes the kept aggregates hold, by their estimate (`Aggregate.held_bytes`)."""
        return self._kept.held

    async def head(self) -> int:
        """The store's newest committed position, awaited on the loop (one query for
        every read asking meanwhile)."""
        return await self._heads.ask(None)

    async def load(self, kind: type[A], aggregate_id: UUID) -> A:
        """The aggregate with every event stored so far, its personal fields sealed
        (`opened` and `opener` give a request what it may show); `NotFound` if there is
        none of that kind. It comes as kept: readers must not change it, and nothing
        else does (a newer state is a new object), so it may be read across awaits and
        on a worker thread."""
        head = await self._heads.ask(None)
        kept = self._kept.get(aggregate_id)
        if kept is not None and kept.head == head and isinstance(kept.aggregate, kind):
            self._kept.touch(aggregate_id)
            return kept.aggregate
        aggregate, snapshot = await self._read(kind, aggregate_id, kept)
        due = _due_snapshot(aggregate, snapshot)
        newest = self._kept.get(aggregate_id)
        head = head if newest is None else max(head, newest.head)
        self._keep(_Kept(aggregate, head, snapshot if due is None else aggregate.version))
        if due is not None:
            await self._source.put_snapshot(due)
        return aggregate

    async def rebuilt(self, kind: type[A], aggregate_id: UUID) -> A:
        """A new aggregate owned by the caller (a command may change it), sealed: what a
        command loads when its cache misses (it opens what its decision compares). A
        copy of the kept one (`load`: only its newer events are read), so a command on
        an aggregate the commands' cache dropped costs no rebuild of its history."""
        return (await self.load(kind, aggregate_id)).clone()

    async def _read(self, kind: type[A], aggregate_id: UUID, kept: _Kept | None) -> tuple[A, int]:
        """The aggregate brought up to date from `kept` a page at a time, and the version
        of its newest snapshot known (0: none). A kept aggregate is copied before the
        first event is applied, never changed. Read from nothing, it starts from its
        newest snapshot, the first page after it asked with it (`_from_snapshot`)."""
        aggregate: Aggregate | None
        if kept is None:
            aggregate, stored = await self._from_snapshot(kind, aggregate_id)
            snapshot, owned = _version(aggregate), True  # a snapshot's is this read's own
        else:
            aggregate, snapshot, owned = kept.aggregate, kept.snapshot, False
            stored = await self._source.events_after(
                aggregate_id, kept.aggregate.version, READ_PAGE
            )
        while True:
            if not _of_kind(kind, aggregate, stored):  # no later page can change that
                raise NotFound(kind.aggregate_type, aggregate_id)
            events = [codec.sealed_event(s) for s in stored]
            newest = self._kept.get(aggregate_id)  # another read may have kept a newer one
            if newest is not None and newest.aggregate.version > _version(aggregate):
                aggregate, owned = newest.aggregate, False
                snapshot = max(snapshot, newest.snapshot)
            for event in events:  # no await from here on: nobody else touches `aggregate`
                if event.originator_version > _version(aggregate):
                    if aggregate is not None and not owned:
                        aggregate = aggregate.clone()
                    aggregate, owned = event.mutate(aggregate), True
            if len(stored) < READ_PAGE:
                break
            await asyncio.sleep(0)  # a local store's query never gives the loop back
            after = stored[-1].originator_version
            stored = await self._source.events_after(aggregate_id, after, READ_PAGE)
        if not isinstance(aggregate, kind):
            raise NotFound(kind.aggregate_type, aggregate_id)
        return aggregate, snapshot

    async def _from_snapshot(
        self, kind: type[A], aggregate_id: UUID
    ) -> tuple[A | None, Sequence[StoredEvent]]:
        """The aggregate as its newest snapshot holds it (None: it has none) and the
        first page of its events after it, in one question: a long history read cold
        reads no page before its snapshot. A snapshot not of `kind`, not in this code's
        shape (`TAGS`) or that does not decode is passed over, and the history read from
        its first event: a snapshot is a cache, not the record."""
        found, stored = await self._source.from_snapshot(aggregate_id, READ_PAGE)
        if found is None:
            return None, stored
        if found.topic == TAGS.get(kind):
            try:
                return restored(kind, found.state), stored
            except msgspec.DecodeError as error:
                log.warning("snapshot passed over", aggregate=str(aggregate_id), error=str(error))
        return None, await self._source.events_after(aggregate_id, 0, READ_PAGE)

    async def _pages(self, aggregate_id: UUID, after: int) -> AsyncIterator[Sequence[StoredEvent]]:
        """The aggregate's stored events after version `after`, `READ_PAGE` at a time
        (the last page may be empty): a history of any length is never held whole, and
        the loop serves other requests between its pages."""
        while True:
            page = await self._source.events_after(aggregate_id, after, READ_PAGE)
            yield page
            if len(page) < READ_PAGE:
                return
            after = page[-1].originator_version
            await asyncio.sleep(0)  # a local store's query never gives the loop back

    async def _head_each(self, asked: list[None]) -> list[int]:
        """One head query for every read that asked for it (`_heads`).

        A kept aggregate read at head H is current while the head is still H: positions
        are drawn in commit order (the table lock), so any event committed since would
        have moved it. Concurrent reads then cost one head query between them, not a
        query each, and stay linearizable across processes: the head a read compares is
        always from a query that began after the read did."""
        return [await self._source.head()] * len(asked)

    async def caught_up(self, aggregate: A) -> A:
        """`aggregate` (owned by the caller, every event of it stored) with the events
        stored after its version applied, in place: not its history, and one query for
        all the catch-ups asked while the one before ran, a page of each (one further
        behind reads the rest a page at a time). (A contended process catches up
        every command's aggregate, `services.commands.CONTENDED_SECONDS`: two API
        processes sharing 16 connections of PATCH asked 2.8 catch-ups a query.)"""
        stored = await self._catch_ups.ask((aggregate.id, aggregate.version))
        applied(aggregate, stored)
        if len(stored) == READ_PAGE:  # more than a page behind: the rest a page at a time
            async for page in self._pages(aggregate.id, aggregate.version):
                applied(aggregate, page)
        return aggregate

    async def _first_pages(self, wanted: Sequence[After]) -> Sequence[Sequence[StoredEvent]]:
        return await self._source.events_after_each(wanted, READ_PAGE)

    async def keys_now(self, subjects: Sequence[UUID]) -> dict[int, bytes | None]:
        """The data keys of `subjects` as the store holds them now, kept nowhere (a page
        of read-model rows is opened with them: an erasure in any process shows at once),
        by the subjects' ints (`UUID.int`: a `UUID`'s hash and equality are Python
        methods, and a page looks up fifty). A subject without a key (never made, or
        destroyed) is absent or None."""
        if not subjects:
            return {}
        return {subject.int: key for subject, key in await self._source.key_rows(subjects)}

    async def hold_keys(self, subjects: Iterable[UUID], *, create: bool = False) -> None:
        """Have the keyring hold the data key of each of `subjects`, or know it destroyed:
        one query for those it lacks. A subject with no key yet (none made) stays unknown,
        or with `create` (its personal data is about to be sealed) gets one."""
        missing = self._keyring.missing(subjects)
        if not missing:
            return
        found = await self._source.keys(missing)
        for subject in missing:
            if subject in found:
                self._keyring.remember(subject, found[subject])
            elif create:
                made = await self._source.create_key(subject, new_data_key())
                self._keyring.remember(subject, made)

    async def opener(self, subject: UUID) -> Callable[[str], str]:
        """Opens values of `subject` (a customer): for one request that may show them."""
        await self.hold_keys((subject,))
        return self._keyring.subject_opener(subject)

    async def opened(self, customer: Customer, fields: Sequence[str]) -> Customer:
        """A copy of a kept customer (`load`) with its personal `fields` opened, for one
        request that may show them; the others stay sealed, to be masked."""
        opened = Customer.__new__(Customer)  # a shallow copy (copy.copy costs 4x as much)
        vars(opened).update(vars(customer))
        if fields:
            await self.hold_keys((customer.id,))
            open_at(self._keyring, opened, customer.id, top_level(fields))
        return opened

    def _keep(self, kept: _Kept) -> None:
        self._kept.put(kept.aggregate.id, kept, kept.aggregate.held_bytes())


def _due_snapshot(aggregate: Aggregate, snapshot: int) -> StoredEvent | None:
    """A snapshot of `aggregate` as the store keeps it (its version, its tag as the
    topic, its state) if it is `SNAPSHOT_EVERY` versions past its newest one known (at
    version `snapshot`)."""
    if aggregate.version - snapshot < SNAPSHOT_EVERY:
        return None
    tag = TAGS[type(aggregate)]
    return StoredEvent(aggregate.id, aggregate.version, tag, snapshot_of(aggregate))


def _of_kind(
    kind: type[Aggregate], aggregate: Aggregate | None, stored: Sequence[StoredEvent]
) -> bool:
    """Whether an aggregate read so far (`aggregate`, then `stored`) may be of `kind`: its
    first event says what it is. Asked before reading on, since another kind's id (a
    customer's, whose history has no bound, asked for as a task) is a 404 however long
    its history, and must not cost reading all of it."""
    if aggregate is not None:
        return isinstance(aggregate, kind)
    return not stored or codec.parse_topic(stored[0].topic)[0].aggregate_type == kind.aggregate_type


def _version(aggregate: Aggregate | None) -> int:
    return 0 if aggregate is None else aggregate.version
