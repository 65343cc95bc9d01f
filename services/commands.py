"""The command service: load, authorise, decide, save, answer with primitives.

Entry points (HTTP, CLI, demo) hand it a `Caller` (who, and the request's correlation
id) and a command (`services.command_base`: one class per use case). Every command goes
through the one access model (`services.access`) before it looks its target up (what
refuses it whatever the target, so that a refusal never tells whether an id exists),
before it decides (the target readable, the rules, the customer not erased) and after (a
creation acts in its new department, a change never widens its caller's own view), so
no entry point decides on its own.

Concurrency: commands on one aggregate take turns within a process (one in flight per
aggregate, handed round the principals waiting: `services.fair_turns`), so they never
collide here. Across processes a concurrent save that wins the
race shows up as an IntegrityError: a command without If-Match is then decided again on
a fresh load after a short random pause (a few times), since its caller expressed no
precondition; with If-Match (`expected` must equal the loaded version) it is a
`VersionConflict` (409), as it is for a command that keeps losing.

Commands are coroutines: deciding runs on the event loop, the event store is reached
through the committer (saves) and worker threads (loads, the log's head, the keyring).

Commands take their aggregate from an `AggregateCache` (as this process last committed
it) when they can, and trust it only for a decision that commits: a conflict, a
refusal or a no-op decided on cached state is decided again on a fresh load, since
another process may have written meanwhile (see `services.aggregate_cache`).

Aggregates are loaded and cached sealed. A command opens only the personal values its
decision compares (`Change.compares`) and its caller may see. Before its aggregate goes
back to the cache, what it opened is set back to the sealed values it opened, and what
its events gave to the values its saved events hold, as the store sealed them once
(`Aggregate.personal_targets`, `services.sealed_state`): plaintext lives in the memory
of the request that sent it, or may see it, and no longer, and the cache holds what a
sealed load would.
I/O: the event store (through a committer) and the keyring.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import NamedTuple, Protocol, TypeVar
from uuid import UUID

import msgspec
from eventsourcing.persistence import IntegrityError

from consumers.keyring import Keyring
from domain.base import (
    Aggregate,
    Context,
    DomainError,
    DomainEvent,
    NotFound,
    ValidationFailed,
    VersionConflict,
)
from domain.conversation import Conversation
from domain.customer import Customer, CustomerErasedError
from services.access import (
    AccessModel,
    CommandRules,
    Forbidden,
    Principal,
    Resource,
    resource_of,
)
from services.aggregate_cache import AggregateCache
from services.batch_refusals import ErasedSubjectError
from services.command_base import Change, Creation, Existing
from services.customer_commands import EraseCustomer
from services.event_positions import event_position
from services.event_store import CrmApplication, Saved
from services.fair_turns import FairTurn
from services.idempotency import Reservation, created_id, emitted_under
from services.sealed_state import Path, open_at, set_each

A = TypeVar("A", bound=Aggregate)
RETRY_SECONDS = 5.0  # how long a command without If-Match keeps deciding again
RETRY_PAUSE = 0.002  # seconds, doubled per lost race up to 50 ms: a random share is slept


class Committer(Protocol):
    def command(self) -> AbstractContextManager[None]:
        """Wraps a whole command, so a group committer knows who is still deciding."""
        ...

    async def save(self, aggregate: Aggregate) -> Saved: ...

    async def aclose(self) -> None: ...


class Loader(Protocol):
    async def __call__(self, kind: type[A], aggregate_id: UUID) -> A: ...


class CatchUp(Protocol):
    async def __call__(self, aggregate: A) -> A: ...


class HoldKeys(Protocol):
    async def __call__(self, subjects: Iterable[UUID], *, create: bool = False) -> None:
        """Has the keyring hold the data keys of some customers (or know them
        destroyed); with `create`, makes those that have none."""
        ...


CONTENDED_SECONDS = 60.0
"""For this long after losing a race to another process (a conflict on save), commands
catch a cached aggregate up with the store before deciding on it: one small query each
(or fewer: `CurrentState.caught_up` asks for those of concurrent commands together),
and a spare copy (`Aggregate.clone`) that a command losing the race again gives back to
the cache, so its retry catches up too. Otherwise every command on an aggregate the
other process wrote since would conflict and be decided again on a rebuild from the
whole history, whose cost grows with it (two API processes posting messages to 50
conversations spent 40 % of their CPU rebuilding them). A process that never loses a
race never pays the query or the copy."""


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """What every command answers: enough to read your own write (`min_position`)."""

    id: UUID
    version: int
    position: int
    message_id: str | msgspec.UnsetType = msgspec.UNSET


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who calls, for which request. Under an Idempotency-Key (`keyed`), a keyed digest of
    the key (`event_key`, never the key: `services.idempotency`) goes into the metadata
    of every event the command emits, and a created aggregate's id derives from the
    key's reservation, so a retry after a crash finds what the attempt did."""

    principal: Principal
    correlation_id: str
    causation_id: str | None = None
    idempotency_key: str | None = None  # as sent, for `new_id` only: no event holds it
    reservation: UUID | None = None
    event_key: str | None = None

    def context(self) -> Context:
        return Context(
            actor=self.principal.name,
            actor_department=self.principal.department,
            occurred_at=datetime.now(UTC),
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            idempotency_key=self.event_key,
        )

    def keyed(self, held: Reservation) -> Caller:
        """This caller under `held`'s key: its events carry `held.event_key`."""
        return msgspec.structs.replace(
            self, idempotency_key=held.key, reservation=held.reservation, event_key=held.event_key
        )

    def new_id(self) -> UUID:
        """The id of an aggregate this caller's command creates."""
        if self.idempotency_key is None or self.reservation is None:
            return uuid.uuid4()
        return created_id(self.reservation, self.principal.name, self.idempotency_key)

    def emitted(self, event: DomainEvent) -> bool:
        """Whether `event` was emitted under this caller's Idempotency-Key, by its
        principal (`emitted_under`): never for an unkeyed caller."""
        if self.idempotency_key is None or self.event_key is None:
            return False
        return emitted_under(event, self.principal.name, self.idempotency_key, self.event_key)


class _Allowed(NamedTuple):
    """A change's rules and the actions `AccessModel.before_target` allowed for them,
    asked once before its target is looked up: each attempt's decision then checks its
    target only (`AccessModel.on_target`)."""

    rules: CommandRules
    actions: list[str]


class _NothingDecided(Exception):  # noqa: N818 - internal signal, never escapes
    """A decision on cached state changed nothing: answer from a fresh load instead."""


class CommandService:
    def __init__(
        self,
        app: CrmApplication,
        committer: Committer,
        keyring: Keyring,
        cache: AggregateCache | None = None,
        access: AccessModel | None = None,
        *,
        loader: Loader | None = None,
        catch_up: CatchUp | None = None,
        hold_keys: HoldKeys | None = None,
    ) -> None:
        """`loader` builds an aggregate from the store on the event loop
        (`CurrentState.rebuilt`), `catch_up` brings one up to date there
        (`CurrentState.caught_up`) and `hold_keys` fetches customers' data keys there
        (`CurrentState.hold_keys`); without them, each runs on a worker thread."""
        self.app = app
        self._loader = loader
        self._catch_up = catch_up
        self._hold_keys = hold_keys
        self._contended_until = 0.0  # monotonic time: see CONTENDED_SECONDS
        self.committer = committer
        self.keyring = keyring
        self.cache = AggregateCache() if cache is None else cache
        self.access = AccessModel() if access is None else access
        # each aggregate's turn (one command at a time, in rotation among principals),
        # kept while a command holds or awaits it: a plain dict and a count, by
        # `UUID.int` (a UUID hashes in Python; a `WeakValueDictionary` cost five calls)
        self._turns: dict[int, FairTurn] = {}

    async def change(
        self, caller: Caller, target: UUID, command: Change[A], *, expected: int | None = None
    ) -> CommandResult:
        """Apply one command to an existing aggregate."""
        command = command.with_defaults(caller.principal)
        rules = command.rules()
        actions = self.access.before_target(caller.principal, rules)  # before the lookup
        allowed = _Allowed(rules, actions)
        key = target.int
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = FairTurn()
        turn.users += 1
        try:
            await turn.take(caller.principal.name)
            try:
                with self.committer.command():
                    result = await self._decided(caller, target, command, expected, allowed)
            finally:
                turn.give_back()
        finally:
            turn.users -= 1
            if not turn.users:
                del self._turns[key]
        extras = command.answer()
        return msgspec.structs.replace(result, **extras) if extras else result

    async def _decided(
        self,
        caller: Caller,
        target: UUID,
        command: Change[A],
        expected: int | None,
        allowed: _Allowed,
    ) -> CommandResult:
        """Decide and save; when another process saved first, decide again on a fresh
        load after a random pause, unless the caller named the version it expected. Each
        lost race means another command got through, so this ends; `RETRY_SECONDS`
        bounds it anyway."""
        give_up, pause = time.monotonic() + RETRY_SECONDS, RETRY_PAUSE
        while True:
            try:
                return await self._attempt(caller, target, command, expected, allowed)
            except IntegrityError:
                if expected is not None:
                    raise await self._conflict(command, target, expected) from None
                if time.monotonic() > give_up:
                    raise await self._conflict(command, target, None) from None
            await asyncio.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.05)

    async def create(self, caller: Caller, command: Creation) -> CommandResult:
        """Create an aggregate (a customer, or a conversation or task of one)."""
        principal = caller.principal
        command = command.with_defaults(principal)
        rules = command.rules()
        self.access.before_target(principal, rules)  # before the customer's lookup
        with self.committer.command():
            subject = command.belongs_to()
            customer = None if subject is None else await self._load(Customer, subject)
            self.access.command(
                principal, rules, None if customer is None else resource_of(customer)
            )
            linked = command.from_conversation()
            talk = None if linked is None else await self._readable(principal, linked)
            existing = Existing(customer, talk)
            created = command.create(caller.context(), caller.new_id(), existing)
            self.access.created(principal, rules, resource_of(created))
            return await self.save(created)

    async def erase_customer(
        self, caller: Caller, target: UUID, command: EraseCustomer, expected: int | None
    ) -> CommandResult:
        """Right to be forgotten: the key is destroyed only AFTER the event is durable,
        so a failed save leaves the customer readable and the request can be retried.

        Should destroying the key fail after the event (the key store locked), the
        erasure is owed: marked so in the key store before the event is saved
        (`Keyring.owe_erasure`, cleared with the key), so the API's sweep finishes it if
        nobody retries (`services.erasure_sweep`), and a retry finishes it at once: an
        erased customer whose key the store still holds is no 409, the key is destroyed
        and the answer is the stored erasure's (no second `CustomerErased`). The keyed
        request that stored it gets that answer after the sweep too (`_owed_erasure`)."""
        self.access.before_target(caller.principal, command.rules())  # nothing owed if refused
        await asyncio.to_thread(self.keyring.owe_erasure, target)
        try:
            result = await self.change(caller, target, command, expected=expected)
        except CustomerErasedError as refused:
            result = await self._owed_erasure(caller, target, command, refused)
        await asyncio.to_thread(self.keyring.erase, target)
        self.cache.clear()  # no cached state of the erased customer outlives its key
        return result

    async def _owed_erasure(
        self, caller: Caller, target: UUID, command: EraseCustomer, refused: CustomerErasedError
    ) -> CommandResult:
        """The answer of a stored erasure whose key the store still holds, for its caller to
        finish it. Once the key is destroyed, the answer of the keyed request that stored
        the erasure, retried (`_stored_by`): the API's sweep may have destroyed the key
        before the client's retry, which got 200 or 409 depending on which came first;
        `refused` (409) for anyone else. `If-Match` is not compared: finishing stores
        nothing, and the answer is the erasure's as stored."""
        customer = await self._load(Customer, target)
        self.access.finishing_erasure(caller.principal, command.rules(), resource_of(customer))
        version = customer.version  # its erasure: nothing is stored after one
        if not customer.erased or (
            await asyncio.to_thread(self.keyring.destroyed, target)
            and not await self._stored_by(caller, target, version)
        ):
            raise refused
        position = await asyncio.to_thread(event_position, self.app.recorder, target, version)
        return CommandResult(id=target, version=version, position=position)

    async def _stored_by(self, caller: Caller, target: UUID, version: int) -> bool:
        """Whether `caller`'s keyed request stored `target`'s event at `version` (read
        sealed: only its metadata is compared)."""
        stored = await asyncio.to_thread(
            self.app.sealed_history, target, after=version - 1, limit=1
        )
        return bool(stored) and caller.emitted(stored[0])

    async def _attempt(
        self,
        caller: Caller,
        target: UUID,
        command: Change[A],
        expected: int | None,
        allowed: _Allowed,
    ) -> CommandResult:
        kind = command.aggregate_class()
        lent = self.cache.take(target)
        if lent is not None and isinstance(lent.aggregate, kind):
            cached: A = lent.aggregate
            contended = time.monotonic() < self._contended_until
            if contended or not lent.recent:  # another process may have written since
                cached = await self._caught_up(cached)
            spare = cached.clone() if contended else None
            try:
                return await self._decide(caller, cached, command, expected, allowed, cached=True)
            except IntegrityError:
                if spare is not None:  # lost another race: the retry catches the spare up
                    self.cache.give_back(spare)
                    raise
                # else the cached state was stale: decide again on a fresh load
            except (DomainError, Forbidden, _NothingDecided):
                pass  # the cached state may be stale: decide again on a fresh load
        aggregate = await self._load(kind, target)
        return await self._decide(caller, aggregate, command, expected, allowed, cached=False)

    async def _decide(
        self,
        caller: Caller,
        aggregate: A,
        command: Change[A],
        expected: int | None,
        allowed: _Allowed,
        *,
        cached: bool,
    ) -> CommandResult:
        principal = caller.principal
        before = await self._resource(aggregate)
        self.access.on_target(principal, allowed.actions, before)
        if expected is not None and aggregate.version != expected:
            raise VersionConflict(aggregate.id, expected, aggregate.version)
        opened = await self._open_compared(principal, command, aggregate, before)
        command.decide(aggregate, caller.context())
        after = resource_of(aggregate, erased=before.erased)
        self.access.changed(principal, allowed.rules, before, after)
        if cached and not aggregate._pending:
            raise _NothingDecided
        try:
            return await self.save(aggregate, opened)
        except IntegrityError:  # another process saved this aggregate first
            self._contended_until = time.monotonic() + CONTENDED_SECONDS
            raise

    async def _open_compared(
        self, principal: Principal, command: Change[A], aggregate: A, before: Resource
    ) -> dict[Path, str]:
        """Opens, in place, the personal values the decision compares (`Change.compares`)
        that its caller may see: the others stay sealed, so a marketing agent's command
        never opens the e-mail they may not see. The sealed values opened, by path."""
        compared = command.compares()
        if not compared or (subject := _subject(aggregate)) is None:
            return {}
        fields = self.access.fields(principal, before)
        paths = tuple(path for path in compared if not fields.hides(path[-1]))
        if not paths:
            return {}
        if self.keyring.known_erased(subject) is not False:  # its key is not held yet
            if self._hold_keys is None:  # the keyring may fetch it: on a worker thread
                return await asyncio.to_thread(open_at, self.keyring, aggregate, subject, paths)
            await self._hold_keys((subject,))
        return open_at(self.keyring, aggregate, subject, paths)

    async def _resource(self, aggregate: Aggregate) -> Resource:
        """The aggregate as the access model sees it; a conversation's or task's customer
        erasure comes from the keyring (cached once known, so rarely a query).

        With `hold_keys`, the customer's data key is fetched on the loop when the keyring
        does not hold it, for a customer's own commands too: sealing the decision's
        personal fields then needs no query (`Keyring.encrypt` is synchronous, and would
        block the loop for one)."""
        customer_id = _subject(aggregate)
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

    async def _readable(self, principal: Principal, conversation_id: UUID) -> Conversation:
        """The conversation a new aggregate comes from, if the caller may read it: the
        same refusal for one they may not and one that does not exist (a 422 naming
        `conversation_id`), so the field tells nothing of another department's work."""
        try:
            conversation = await self._load(Conversation, conversation_id)
        except NotFound:
            conversation = None
        if conversation is None or not self.access.readable(principal, resource_of(conversation)):
            raise ValidationFailed(
                "conversation_id", f"no conversation {conversation_id} you may read"
            )
        return conversation

    async def _load(self, kind: type[A], aggregate_id: UUID) -> A:
        """From the store (a query plus decoding the history): on the loop with a
        `loader`, else on a worker thread."""
        if self._loader is not None:
            return await self._loader(kind, aggregate_id)
        return await asyncio.to_thread(self.app.sealed_load, kind, aggregate_id)

    async def _caught_up(self, aggregate: A) -> A:
        if self._catch_up is not None:
            return await self._catch_up(aggregate)
        return await asyncio.to_thread(self.app.caught_up, aggregate)

    async def _conflict(
        self, command: Change[A], target: UUID, expected: int | None
    ) -> VersionConflict:
        actual = (await self._load(command.aggregate_class(), target)).version
        return VersionConflict(target, actual - 1 if expected is None else expected, actual)

    async def save(
        self, aggregate: Aggregate, opened: Mapping[Path, str] | None = None
    ) -> CommandResult:
        """Save pending events; a decision that changed nothing answers the current state.
        The saved aggregate goes back to the cache sealed: the values `opened` for its
        decision as they were, those its events gave as the store sealed them."""
        if not aggregate._pending:  # a no-op decision must not write
            position = await asyncio.to_thread(self.app.head_position)
            return CommandResult(id=aggregate.id, version=aggregate.version, position=position)
        if self._hold_keys is not None:  # sealing then needs no key query on the loop
            await self._hold_keys(_subjects(aggregate._pending), create=True)
        try:
            saved = await self.committer.save(aggregate)
        except ErasedSubjectError:  # erased through another process, unknown here yet
            kind = aggregate.aggregate_type
            raise CustomerErasedError(f"the customer of {kind} {aggregate.id} was erased") from None
        set_each(aggregate, {**(opened or {}), **_sealed_values(aggregate, saved.events)})
        self.cache.give_back(aggregate)
        return CommandResult(id=aggregate.id, version=saved.version, position=saved.position)


def _sealed_values(aggregate: Aggregate, events: Iterable[DomainEvent]) -> dict[Path, str | None]:
    """Where the aggregate's state holds the personal values of `events` (applied to it,
    in order), and those values as the events hold them."""
    return {
        path: getattr(event, path[-1])
        for event in events
        for path in aggregate.personal_targets(event)
    }


def _subject(aggregate: Aggregate) -> UUID | None:
    """Whose key seals the aggregate's personal fields: a customer's own, or that of
    the customer a conversation or task belongs to."""
    if isinstance(aggregate, Customer):
        return aggregate.id
    customer_id: UUID | None = getattr(aggregate, "customer_id", None)
    return customer_id


def _subjects(events: Iterable[DomainEvent]) -> set[UUID]:
    """The customers whose data keys seal these events' personal fields."""
    return {event.data_subject for event in events if event.personal_fields}
