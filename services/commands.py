"""The command service: load, authorise, decide, save, answer with primitives.

Entry points (HTTP, CLI, demo) call these methods with a `Caller` (who, and the
request's correlation id) and a decision (a function that calls one domain method).
Optimistic concurrency: `expected` (from If-Match) must equal the loaded version; a
concurrent save that wins the race shows up as an IntegrityError, after which the
command is decided again once on a fresh load (without If-Match) before giving up
with `VersionConflict`.

Commands are coroutines: deciding runs on the event loop, the event store is reached
through the committer (saves) and worker threads (loads, the log's head, the keyring).

Commands take their aggregate from an `AggregateCache` (as this process last committed
it) when they can, and trust it only for a decision that commits: a conflict, a
refusal or a no-op decided on cached state is decided again on a fresh load, since
another process may have written meanwhile (see `services.aggregate_cache`).
I/O: the event store (through a committer) and the keyring.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

import msgspec
from eventsourcing.persistence import IntegrityError

from consumers.keyring import Keyring
from domain.base import Aggregate, Context, DomainError, VersionConflict
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from services.aggregate_cache import AggregateCache
from services.event_store import CrmApplication
from services.policy import Forbidden, Principal, authorize

A = TypeVar("A", bound=Aggregate)
Decision = Callable[[A, Context], None]


class Committer(Protocol):
    def command(self) -> AbstractContextManager[None]:
        """Wraps a whole command, so a group committer knows who is still deciding."""
        ...

    async def save(self, aggregate: Aggregate) -> tuple[int, int]: ...

    async def aclose(self) -> None: ...


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """What every command answers: enough to read your own write (`min_position`)."""

    id: UUID
    version: int
    position: int
    message_id: str | msgspec.UnsetType = msgspec.UNSET


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    correlation_id: str
    causation_id: str | None = None

    def context(self) -> Context:
        return Context(
            actor=self.principal.name,
            actor_department=self.principal.department,
            occurred_at=datetime.now(UTC),
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
        )


def departments_of(aggregate: Aggregate) -> Iterable[str]:
    """The departments a resource belongs to, for `own`-scoped policy rules."""
    if isinstance(aggregate, Customer):
        return aggregate.departments
    if isinstance(aggregate, Conversation | Task):
        return (aggregate.department,)
    return ()


class _NothingDecided(Exception):  # noqa: N818 - internal signal, never escapes
    """A decision on cached state changed nothing: answer from a fresh load instead."""


class CommandService:
    def __init__(
        self,
        app: CrmApplication,
        committer: Committer,
        keyring: Keyring,
        cache: AggregateCache | None = None,
    ) -> None:
        self.app = app
        self.committer = committer
        self.keyring = keyring
        self.cache = AggregateCache() if cache is None else cache

    async def change(
        self,
        caller: Caller,
        action: str,
        kind: type[A],
        aggregate_id: UUID,
        decide: Decision[A],
        *,
        expected: int | None = None,
    ) -> CommandResult:
        """Apply one decision to an existing aggregate."""
        with self.committer.command():
            try:
                return await self._attempt(
                    caller, action, kind, aggregate_id, decide, expected=expected
                )
            except IntegrityError:
                if expected is not None:
                    raise await self._conflict(kind, aggregate_id, expected) from None
            try:
                return await self._attempt(
                    caller, action, kind, aggregate_id, decide, expected=None
                )
            except IntegrityError:
                raise await self._conflict(kind, aggregate_id, None) from None

    async def _attempt(
        self,
        caller: Caller,
        action: str,
        kind: type[A],
        aggregate_id: UUID,
        decide: Decision[A],
        *,
        expected: int | None,
    ) -> CommandResult:
        cached = self.cache.take(aggregate_id)
        if isinstance(cached, kind):
            try:
                return await self._decide(caller, action, cached, decide, expected, cached=True)
            except (DomainError, Forbidden, IntegrityError, _NothingDecided):
                pass  # the cached state may be stale: decide again on a fresh load
        aggregate = await self._load(kind, aggregate_id)
        return await self._decide(caller, action, aggregate, decide, expected, cached=False)

    async def _decide(
        self,
        caller: Caller,
        action: str,
        aggregate: A,
        decide: Decision[A],
        expected: int | None,
        *,
        cached: bool,
    ) -> CommandResult:
        authorize(caller.principal, action, departments_of(aggregate))
        if expected is not None and aggregate.version != expected:
            raise VersionConflict(aggregate.id, expected, aggregate.version)
        decide(aggregate, caller.context())
        if cached and not aggregate._pending:
            raise _NothingDecided
        return await self.save(aggregate)

    async def _load(self, kind: type[A], aggregate_id: UUID) -> A:
        """From the store, on a worker thread (a query plus decoding the history)."""
        return await asyncio.to_thread(self.app.load, kind, aggregate_id)

    async def _conflict(
        self, kind: type[A], aggregate_id: UUID, expected: int | None
    ) -> VersionConflict:
        actual = (await self._load(kind, aggregate_id)).version
        return VersionConflict(aggregate_id, actual - 1 if expected is None else expected, actual)

    async def save(self, aggregate: Aggregate) -> CommandResult:
        """Save pending events; a decision that changed nothing answers the current state."""
        if not aggregate._pending:  # a no-op decision must not write
            position = await asyncio.to_thread(self.app.head_position)
            return CommandResult(id=aggregate.id, version=aggregate.version, position=position)
        version, position = await self.committer.save(aggregate)
        self.cache.give_back(aggregate)
        return CommandResult(id=aggregate.id, version=version, position=position)

    # --- creations: ids are made here, never in the domain ---------------------------

    async def register_customer(self, caller: Caller, **fields: Any) -> CommandResult:
        department = fields.get("owner_department") or caller.principal.department
        authorize(caller.principal, "customer.create", (str(department).strip().lower(),))
        fields["owner_department"] = department
        with self.committer.command():
            customer = Customer.register(caller.context(), customer_id=uuid.uuid4(), **fields)
            return await self.save(customer)

    async def open_conversation(
        self, caller: Caller, customer_id: UUID, **fields: Any
    ) -> CommandResult:
        with self.committer.command():
            customer = await self._load(Customer, customer_id)
            authorize(caller.principal, "conversation.write", customer.departments)
            conversation = Conversation.open(
                caller.context(), conversation_id=uuid.uuid4(), customer=customer, **fields
            )
            return await self.save(conversation)

    async def create_task(self, caller: Caller, customer_id: UUID, **fields: Any) -> CommandResult:
        with self.committer.command():
            customer = await self._load(Customer, customer_id)
            authorize(caller.principal, "task.write", customer.departments)
            task = Task.create(caller.context(), task_id=uuid.uuid4(), customer=customer, **fields)
            return await self.save(task)

    async def log_message(
        self, caller: Caller, conversation_id: UUID, expected: int | None, **fields: Any
    ) -> CommandResult:
        message_id = uuid.uuid4().hex

        def decide(conversation: Conversation, ctx: Context) -> None:
            conversation.log_message(ctx, message_id=message_id, **fields)

        result = await self.change(
            caller, "conversation.write", Conversation, conversation_id, decide, expected=expected
        )
        return msgspec.structs.replace(result, message_id=message_id)

    async def add_note(
        self, caller: Caller, conversation_id: UUID, expected: int | None, content: str
    ) -> CommandResult:
        message_id = uuid.uuid4().hex

        def decide(conversation: Conversation, ctx: Context) -> None:
            conversation.add_note(ctx, message_id=message_id, content=content)

        result = await self.change(
            caller, "conversation.write", Conversation, conversation_id, decide, expected=expected
        )
        return msgspec.structs.replace(result, message_id=message_id)

    async def erase_customer(
        self, caller: Caller, customer_id: UUID, expected: int | None, reason: str | None
    ) -> CommandResult:
        """Right to be forgotten: the key is destroyed only AFTER the event is durable,
        so a failed save leaves the customer readable and the request can be retried."""
        result = await self.change(
            caller,
            "customer.erase",
            Customer,
            customer_id,
            lambda customer, ctx: customer.erase(ctx, reason),
            expected=expected,
        )
        await asyncio.to_thread(self.keyring.erase, customer_id)
        self.cache.clear()  # cached aggregates may hold the erased plaintext
        return result
