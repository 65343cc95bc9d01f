"""What every command is: a named, typed request that owns its policy action and defaults.

One class per use case (`services.customer_commands`, `conversation_commands`,
`task_commands`). Its fields are what a client sends (the HTTP body, plus any value the
route takes from the path); its class says which policy action it is (`action`), which
field names an assignee or a department (the access model's field-level rules), what it
defaults from its caller (`with_defaults`) and which domain decision it makes. The HTTP
routes, the CLI and `crm demo` all run commands through `CommandService`, so each use
case is decided in one place.

I/O: none.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, NamedTuple, Self, TypeVar
from uuid import UUID

import msgspec
from msgspec import UNSET

from domain.base import Aggregate, Context
from domain.conversation import Conversation
from domain.customer import Customer
from services.access.model import CommandRules
from services.access.rules import Principal
from services.sealed_state import Path

A = TypeVar("A", bound=Aggregate)


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every command. Absent optional fields are UNSET (PATCH: unchanged)."""

    action: ClassVar[str]
    assignee_field: ClassVar[str | None] = None
    department_fields: ClassVar[tuple[str, ...]] = ()

    def fields(self) -> dict[str, Any]:
        """The given fields as keyword arguments for a domain method (UNSET left out)."""
        return {
            name: value
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not UNSET
        }

    def with_defaults(self, principal: Principal) -> Self:
        """The command with the values its caller implies (own department...) filled in."""
        return self

    def rules(self) -> CommandRules:
        """What the access model needs: the action, an assignee, the departments named."""
        assignee = getattr(self, self.assignee_field) if self.assignee_field else None
        departments = {
            name: value.strip().lower()
            for name in self.department_fields
            if isinstance(value := getattr(self, name), str)
        }
        return CommandRules(
            action=self.action,
            assignee=assignee.strip() if isinstance(assignee, str) else None,
            departments=departments,
        )

    def answer(self) -> dict[str, Any]:
        """Extra fields of the command's answer (a new message's id)."""
        return {}


class Change(Command, Generic[A], frozen=True, kw_only=True):
    """A decision on an existing aggregate of `aggregate_class()`."""

    @classmethod
    def aggregate_class(cls) -> type[A]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{cls.__name__} must name its aggregate class")

    def decide(self, aggregate: A, ctx: Context) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement decide()")

    def compares(self) -> tuple[Path, ...]:
        """Where its aggregate holds the personal values its decision compares with what
        it is given (`services.sealed_state` paths). The commands hold aggregates sealed
        and open just these for the decision, and only those its caller may see: one
        left sealed never equals a given value."""
        return ()


class Existing(NamedTuple):
    """The stored aggregates a new one is made with: its customer (`Creation.belongs_to`;
    None for a new customer) and the conversation it comes from (`from_conversation`)."""

    customer: Customer | None = None
    conversation: Conversation | None = None


class Creation(Command, frozen=True, kw_only=True):
    """A command that creates an aggregate (of a customer, unless it is the customer)."""

    def belongs_to(self) -> UUID | None:
        """The existing customer the new aggregate belongs to (None: a new customer)."""
        return None

    def from_conversation(self) -> UUID | None:
        """The existing conversation the new aggregate comes from, named by the field
        `conversation_id` (None: none). It must be one the caller may read."""
        return None

    def create(
        self, ctx: Context, new_id: UUID, existing: Existing
    ) -> Aggregate:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement create()")


def staff(principal: Principal) -> bool:
    """Department staff (agents and managers) act for themselves by default."""
    return principal.role in ("agent", "manager")
