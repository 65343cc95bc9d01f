"""Conversation use cases: one command class each, with its policy action and its decision.

I/O: none (`CommandService` loads, authorises and saves).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Self
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from domain import fields as f
from domain.base import Aggregate, Context
from domain.conversation import Conversation
from services.access.rules import Principal
from services.command_base import Change, Creation, Existing, staff
from services.sealed_state import Path

WRITE = "conversation.write"


def new_entry_id() -> str:
    """A new entry's `message_id`: what `uuid.uuid4().hex` gives (128 bits from
    `os.urandom` with a UUID 4's version and variant bits), without building a `UUID`,
    whose checks of its keyword arguments cost ~11,000 instructions a message, twice
    what this does."""
    digits = bytearray(os.urandom(16))
    digits[6] = digits[6] & 0x0F | 0x40  # version 4
    digits[8] = digits[8] & 0x3F | 0x80  # variant: RFC 4122
    return digits.hex()


class OpenConversation(Creation, frozen=True, kw_only=True):
    """A conversation in the caller's department (unless named); staff who open one in
    their own department become its agent unless another agent is named."""

    action: ClassVar[str] = WRITE
    department_fields: ClassVar[tuple[str, ...]] = ("department",)
    customer_id: UUID
    channel: f.Code
    subject: f.Line
    department: f.Code | None = None
    agent: f.PersonName | None = None
    participants: f.Participants = msgspec.field(default_factory=list)

    def belongs_to(self) -> UUID:
        return self.customer_id

    def with_defaults(self, principal: Principal) -> Self:
        department = self.department or principal.department
        own = staff(principal) and department.strip().lower() == principal.department
        agent = self.agent if self.agent is not None or not own else principal.name
        return msgspec.structs.replace(self, department=department, agent=agent)

    def create(self, ctx: Context, new_id: UUID, existing: Existing) -> Aggregate:
        assert existing.customer is not None, "a conversation needs its customer"
        fields: dict[str, Any] = self.fields()
        del fields["customer_id"]
        return Conversation.open(ctx, conversation_id=new_id, customer=existing.customer, **fields)


class ConversationChange(Change[Conversation], frozen=True, kw_only=True):
    action: ClassVar[str] = WRITE

    @classmethod
    def aggregate_class(cls) -> type[Conversation]:
        return Conversation


class LogMessage(ConversationChange, frozen=True, kw_only=True):
    """An inbound or outbound message; `message_id` is made here unless the client names
    one (a retry naming the same id is then refused as a duplicate)."""

    direction: f.Code
    author: f.Line
    content: f.MessageText
    sent_at: f.Instant | None = None
    message_id: f.PathId | UnsetType = UNSET

    def with_defaults(self, principal: Principal) -> Self:
        if self.message_id is not UNSET:
            return self
        return msgspec.structs.replace(self, message_id=new_entry_id())

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.log_message(ctx, **self.fields())

    def answer(self) -> dict[str, Any]:
        return {"message_id": self.message_id}


class AddNote(ConversationChange, frozen=True, kw_only=True):
    """An internal note, authored by its caller."""

    content: f.MessageText
    message_id: f.PathId | UnsetType = UNSET

    def with_defaults(self, principal: Principal) -> Self:
        if self.message_id is not UNSET:
            return self
        return msgspec.structs.replace(self, message_id=new_entry_id())

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.add_note(ctx, **self.fields())

    def answer(self) -> dict[str, Any]:
        return {"message_id": self.message_id}


class CorrectMessage(ConversationChange, frozen=True, kw_only=True):
    """A correction; the original stays in history. `message_id` names an entry logged
    earlier, perhaps before `PathId` was its rule (so for `RetractMessage`)."""

    message_id: f.RecordedId
    content: f.MessageText
    reason: f.Line

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.correct_message(ctx, self.message_id, content=self.content, reason=self.reason)

    def compares(self) -> tuple[Path, ...]:
        """The message's content: a correction to the same text changes nothing."""
        return (("messages", self.message_id, "content"),)


class RetractMessage(ConversationChange, frozen=True, kw_only=True):
    message_id: f.RecordedId
    reason: f.Line

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.retract_message(ctx, self.message_id, reason=self.reason)


class HandOff(ConversationChange, frozen=True, kw_only=True):
    """Move the conversation to another department and/or agent."""

    department_fields: ClassVar[tuple[str, ...]] = ("to_department",)
    to_department: f.Code
    to_agent: f.PersonName | None = None
    note: f.Paragraph | None = None

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.hand_off(ctx, **self.fields())


class CloseConversation(ConversationChange, frozen=True, kw_only=True):
    outcome: f.Code
    summary: f.Paragraph | None = None

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.close(ctx, **self.fields())


class ReopenConversation(ConversationChange, frozen=True, kw_only=True):
    reason: f.Line

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.reopen(ctx, reason=self.reason)


class RateSatisfaction(ConversationChange, frozen=True, kw_only=True):
    """A CSAT answer (1-5), credited to the department and agent of the interaction."""

    action: ClassVar[str] = "conversation.survey"
    score: f.Score
    comment: f.Paragraph | None = None

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.rate_satisfaction(ctx, score=self.score, comment=self.comment)


class ScoreRecommendation(ConversationChange, frozen=True, kw_only=True):
    """An NPS answer (0-10), credited like a CSAT answer."""

    action: ClassVar[str] = "conversation.survey"
    score: f.Score
    comment: f.Paragraph | None = None

    def decide(self, aggregate: Conversation, ctx: Context) -> None:
        aggregate.score_recommendation(ctx, score=self.score, comment=self.comment)
