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
collide here; a race lost to another process is decided again or answered 409
(`services.command_races`).

Commands are coroutines: deciding runs on the event loop, the event store is reached
through the committer (saves) and worker threads (loads, the log's head, the keyring).

Commands take their aggregate from an `AggregateCache` (as this process last committed
it) when they can, and trust it only for a decision that commits: a conflict, a
refusal or a no-op decided on cached state is decided again on a fresh load, since
another process may have written meanwhile (see `services.aggregate_cache`).

Aggregates are loaded and cached sealed: a command opens only the personal values its
decision compares and its caller may see, and its aggregate goes back to the cache as a
sealed load would give it (`services.command_keys`).
I/O: the event store (through a committer) and the keyring.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
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
from services.access.model import AccessModel, CommandRules
from services.access.resources import Resource, resource_of
from services.access.rules import Forbidden, Principal
from services.aggregate_cache import AggregateCache
from services.batch_refusals import ErasedSubjectError
from services.command_base import Change, Creation, Existing
from services.command_keys import CommandKeys, HoldKeys, sealed_values
from services.command_races import Contention, retried
from services.event_store import CrmApplication, Saved
from services.fair_turns import FairTurns
from services.idempotency import Reservation, created_id, emitted_under
from services.sealed_state import Path, set_each

A = TypeVar("A", bound=Aggregate)


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
        self.keys = CommandKeys(keyring, hold_keys)
        self._contention = Contention()
        self.committer = committer
        self.keyring = keyring
        self.cache = AggregateCache() if cache is None else cache
        self.access = AccessModel() if access is None else access
        self._turns = FairTurns()  # each aggregate's: one command at a time, in rotation

    async def change(
        self, caller: Caller, target: UUID, command: Change[A], *, expected: int | None = None
    ) -> CommandResult:
        """Apply one command to an existing aggregate."""
        command = command.with_defaults(caller.principal)
        rules = command.rules()
        actions = self.access.before_target(caller.principal, rules)  # before the lookup
        allowed = _Allowed(rules, actions)
        turn = await self._turns.take(target.int, caller.principal.name)
        try:
            with self.committer.command():
                result = await retried(
                    lambda: self._attempt(caller, target, command, expected, allowed),
                    expected,
                    lambda version: self._conflict(caller, allowed, command, target, version),
                )
        finally:
            self._turns.give_back(target.int, turn)
        extras = command.answer()
        return msgspec.structs.replace(result, **extras) if extras else result

    async def create(self, caller: Caller, command: Creation) -> CommandResult:
        """Create an aggregate (a customer, or a conversation or task of one)."""
        principal = caller.principal
        command = command.with_defaults(principal)
        rules = command.rules()
        self.access.before_target(principal, rules)  # before the customer's lookup
        with self.committer.command():
            subject = command.belongs_to()
            customer = None if subject is None else await self.load(Customer, subject)
            self.access.command(
                principal, rules, None if customer is None else resource_of(customer)
            )
            linked = command.from_conversation()
            talk = None if linked is None else await self._readable(principal, linked)
            existing = Existing(customer, talk)
            created = command.create(caller.context(), caller.new_id(), existing)
            self.access.created(principal, rules, resource_of(created))
            return await self.save(created)

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
            contended = bool(self._contention)
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
        aggregate = await self.load(kind, target)
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
        before = await self.keys.resource(aggregate)
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
            self._contention.lost()
            raise

    async def _open_compared(
        self, principal: Principal, command: Change[A], aggregate: A, before: Resource
    ) -> dict[Path, str]:
        """Opens, in place, the personal values the decision compares (`Change.compares`)
        that its caller may see: the others stay sealed, so a marketing agent's command
        never opens the e-mail they may not see. The sealed values opened, by path."""
        compared = command.compares()
        if not compared:
            return {}
        fields = self.access.fields(principal, before)
        paths = tuple(path for path in compared if not fields.hides(path[-1]))
        return await self.keys.opened(aggregate, paths)

    async def _readable(self, principal: Principal, conversation_id: UUID) -> Conversation:
        """The conversation a new aggregate comes from, if the caller may read it: the
        same refusal for one they may not and one that does not exist (a 422 naming
        `conversation_id`), so the field tells nothing of another department's work."""
        try:
            conversation = await self.load(Conversation, conversation_id)
        except NotFound:
            conversation = None
        if conversation is None or not self.access.readable(principal, resource_of(conversation)):
            raise ValidationFailed(
                "conversation_id", f"no conversation {conversation_id} you may read"
            )
        return conversation

    async def load(self, kind: type[A], aggregate_id: UUID) -> A:
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
        self,
        caller: Caller,
        allowed: _Allowed,
        command: Change[A],
        target: UUID,
        expected: int | None,
    ) -> VersionConflict:
        """The 409 of a race lost to another process, with the version it saved; judged
        first as a decision is (`AccessModel.on_target`): that command may have taken
        the aggregate out of the caller's sight (a hand-off, an unshare), and then its
        version is not theirs to learn: 404, as for an id that exists nowhere."""
        aggregate = await self.load(command.aggregate_class(), target)
        now = await self.keys.resource(aggregate)
        self.access.on_target(caller.principal, allowed.actions, now)
        actual = aggregate.version
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
        await self.keys.hold_for_sealing(aggregate._pending)
        try:
            saved = await self.committer.save(aggregate)
        except ErasedSubjectError:  # erased through another process, unknown here yet
            kind = aggregate.aggregate_type
            raise CustomerErasedError(f"the customer of {kind} {aggregate.id} was erased") from None
        set_each(aggregate, {**(opened or {}), **sealed_values(aggregate, saved.events)})
        self.cache.give_back(aggregate)
        return CommandResult(id=aggregate.id, version=saved.version, position=saved.position)
