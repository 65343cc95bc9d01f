"""The Conversation aggregate: one exchange with a customer, across departments.

Order: events, errors, state, decisions, apply. Every event carries `customer_id` so
consumers and the codec know the data subject. Beside it: its entries and how a command
names one (`domain.conversation_messages`), how much it may hold
(`domain.conversation_room`), and when it takes a CSAT or NPS answer and whom that
credits (`domain.conversation_surveys`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar, Literal, Self
from uuid import UUID

import msgspec

from domain import codec
from domain import conversation_room as room
from domain import conversation_surveys as survey
from domain import fields as bound
from domain import validation as check
from domain.base import (
    HELD_ENTRY,
    Aggregate,
    AwareDatetime,
    Context,
    DomainEvent,
    E,
    EventAppliers,
    InvalidTransition,
)
from domain.conversation_messages import Message, live_message, new_message_id
from domain.customer import Customer

CHANNELS = frozenset({"phone", "email", "chat", "meeting", "wechat", "sms", "social", "other"})
OUTCOMES = frozenset({"resolved", "unresolved", "sale", "no_action", "escalated", "other"})
DIRECTIONS = frozenset({"inbound", "outbound"})

# --- events ---------------------------------------------------------------------------


class ConversationEvent(DomainEvent, frozen=True, kw_only=True, tag=False):
    """Base of Conversation events (untagged: never on the wire by itself)."""

    aggregate_type: ClassVar[str] = "conversation"
    customer_id: UUID


class ConversationOpened(ConversationEvent, frozen=True, kw_only=True, tag="ConversationOpened"):
    channel: str
    subject: str
    department: str
    agent: str | None = None
    participants: tuple[str, ...] = ()
    personal_fields: ClassVar[tuple[str, ...]] = ("subject",)


class MessageLogged(ConversationEvent, frozen=True, kw_only=True, tag="MessageLogged"):
    """`author` is personal: for inbound messages it is the customer (name or address)."""

    message_id: str
    direction: Literal["inbound", "outbound"]
    author: str
    content: str
    sent_at: AwareDatetime
    personal_fields: ClassVar[tuple[str, ...]] = ("author", "content")


class InternalNoteAdded(ConversationEvent, frozen=True, kw_only=True, tag="InternalNoteAdded"):
    message_id: str
    author: str
    content: str
    personal_fields: ClassVar[tuple[str, ...]] = ("content",)


class MessageCorrected(ConversationEvent, frozen=True, kw_only=True, tag="MessageCorrected"):
    """Version 2: `reason` became personal (it often quotes the customer) and is sealed."""

    message_id: str
    content: str
    reason: str
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("content", "reason")

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Same shape: a v1 reason is plaintext, which opening passes through unchanged."""


class MessageRetracted(ConversationEvent, frozen=True, kw_only=True, tag="MessageRetracted"):
    """Version 2: `reason` became personal, as for `MessageCorrected`."""

    message_id: str
    reason: str
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("reason",)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Same shape: a v1 reason is plaintext, which opening passes through unchanged."""


class ConversationHandedOff(
    ConversationEvent, frozen=True, kw_only=True, tag="ConversationHandedOff"
):
    from_department: str
    from_agent: str | None = None
    to_department: str
    to_agent: str | None = None
    note: str | None = None
    personal_fields: ClassVar[tuple[str, ...]] = ("note",)


class ConversationClosed(ConversationEvent, frozen=True, kw_only=True, tag="ConversationClosed"):
    """Version 2: version 1 called the outcome `result` and had no `summary`."""

    outcome: str
    summary: str | None = None
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("summary",)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["outcome"] = state.pop("result")
        state.setdefault("summary", None)


class ConversationReopened(
    ConversationEvent, frozen=True, kw_only=True, tag="ConversationReopened"
):
    """Version 2: `reason` became personal, as for `MessageCorrected`."""

    reason: str
    class_version: ClassVar[int] = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("reason",)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Same shape: a v1 reason is plaintext, which opening passes through unchanged."""


class SatisfactionRated(ConversationEvent, frozen=True, kw_only=True, tag="SatisfactionRated"):
    """CSAT answer (1-5), credited to the department/agent as of the interaction."""

    score: int
    comment: str | None = None
    agent: str | None = None
    department: str
    personal_fields: ClassVar[tuple[str, ...]] = ("comment",)


class RecommendationScored(
    ConversationEvent, frozen=True, kw_only=True, tag="RecommendationScored"
):
    """NPS answer (0-10), credited like `SatisfactionRated`."""

    score: int
    comment: str | None = None
    agent: str | None = None
    department: str
    personal_fields: ClassVar[tuple[str, ...]] = ("comment",)


# --- errors ---------------------------------------------------------------------------


class ConversationClosedError(InvalidTransition):
    """Messages, notes and hand-offs need an open conversation."""


# --- state ----------------------------------------------------------------------------


_when: EventAppliers[Conversation] = EventAppliers()


class Conversation(Aggregate):
    aggregate_type: ClassVar[str] = "conversation"
    max_events: ClassVar[int | None] = bound.CONVERSATION_EVENTS
    personal_fields: ClassVar[tuple[str, ...]] = (
        "subject",
        "summary",
        *(f"messages.*.{name}" for name in Message.personal_fields),
    )

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.customer_id: UUID | None = None
        self.channel = ""
        self.subject = ""
        self.department = ""
        self.agent: str | None = None
        self.participants: tuple[str, ...] = ()
        self.status: Literal["open", "closed"] = "open"
        self.messages: dict[str, Message] = {}
        self._text_logged = 0  # bytes (UTF-8) of every content logged, noted or corrected
        self.handoffs = 0
        self.outcome: str | None = None
        self.summary: str | None = None
        self.opened_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.closings = 0
        self.csat_given = False
        self.nps_given = False
        self.last_csat: int | None = None
        self.last_nps: int | None = None

    # --- decisions --------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        ctx: Context,
        *,
        conversation_id: UUID,
        customer: Customer,
        channel: str,
        subject: str,
        department: str | None = None,
        agent: str | None = None,
        participants: tuple[str, ...] | list[str] = (),
    ) -> Self:
        """A new conversation; archived or erased customers take no new conversations."""
        customer.require_open_for_work()
        conversation = cls(conversation_id)
        conversation._trigger(
            ConversationOpened,
            ctx,
            customer_id=customer.id,
            channel=check.one_of(channel.strip().lower(), CHANNELS, "channel"),
            subject=check.text(subject, "subject"),
            department=check.department(department or ctx.actor_department),
            agent=check.optional_person(agent, "agent"),
            participants=room.participants(participants),
        )
        return conversation

    def log_message(
        self,
        ctx: Context,
        *,
        message_id: str,
        direction: str,
        author: str,
        content: str,
        sent_at: datetime | None = None,
    ) -> None:
        """`sent_at` as the client reports it, checked as a past time; absent, the
        command's own time: the event's `occurred_at`, as every event takes it (`_trigger`)."""
        self._require_open()
        self._trigger(
            MessageLogged,
            ctx,
            message_id=new_message_id(self.messages, message_id),
            direction=check.one_of(direction, DIRECTIONS, "direction"),
            author=check.text(author, "author"),  # as written, by anyone: no rule compares it
            content=self._room_for(check.text(content, "content", bound.MESSAGE, multiline=True)),
            sent_at=ctx.occurred_at
            if sent_at is None
            else check.happened(sent_at, ctx.occurred_at, "sent_at"),
        )

    def add_note(self, ctx: Context, *, message_id: str, content: str) -> None:
        """An internal note: seen by staff only, authored by the acting principal."""
        self._require_open()
        self._trigger(
            InternalNoteAdded,
            ctx,
            message_id=new_message_id(self.messages, message_id),
            author=check.person(ctx.actor, "author"),  # a principal: personal, not sealed-looking
            content=self._room_for(check.text(content, "content", bound.MESSAGE, multiline=True)),
        )

    def correct_message(self, ctx: Context, message_id: str, *, content: str, reason: str) -> None:
        """Allowed after closing too: the record may be fixed; the original stays in history."""
        message = live_message(self.messages, message_id)
        new_content = check.text(content, "content", bound.MESSAGE, multiline=True)
        if new_content != message.content:
            self._trigger(
                MessageCorrected,
                ctx,
                message_id=message_id,
                content=self._room_for(new_content, correction=True),
                reason=check.text(reason, "reason"),
            )

    def retract_message(self, ctx: Context, message_id: str, *, reason: str) -> None:
        live_message(self.messages, message_id)
        self._trigger(
            MessageRetracted, ctx, message_id=message_id, reason=check.text(reason, "reason")
        )

    def hand_off(
        self,
        ctx: Context,
        *,
        to_department: str,
        to_agent: str | None = None,
        note: str | None = None,
    ) -> None:
        """Move the conversation to another department/agent; a move to itself is a no-op."""
        self._require_open()
        department = check.department(to_department, "to_department")
        agent = check.optional_person(to_agent, "to_agent")
        if (department, agent) == (self.department, self.agent):
            return
        room.require_room_for(self.id, self.participants, agent)
        self._trigger(
            ConversationHandedOff,
            ctx,
            from_department=self.department,
            from_agent=self.agent,
            to_department=department,
            to_agent=agent,
            note=check.optional_text(note, "note", bound.PARAGRAPH, multiline=True),
        )

    def close(self, ctx: Context, *, outcome: str, summary: str | None = None) -> None:
        self._require_open()
        self._trigger(
            ConversationClosed,
            ctx,
            outcome=check.one_of(outcome, OUTCOMES, "outcome"),
            summary=check.optional_text(summary, "summary", bound.PARAGRAPH, multiline=True),
        )

    def reopen(self, ctx: Context, *, reason: str) -> None:
        if self.status != "closed":
            raise InvalidTransition(f"conversation {self.id} is not closed")
        self._trigger(ConversationReopened, ctx, reason=check.text(reason, "reason"))

    def rate_satisfaction(self, ctx: Context, *, score: int, comment: str | None = None) -> None:
        survey.require_survey_open(self.status, self.csat_given, "CSAT")
        self._trigger(SatisfactionRated, ctx, **self._survey(score, survey.CSAT_SCALE, comment))

    def score_recommendation(self, ctx: Context, *, score: int, comment: str | None = None) -> None:
        survey.require_survey_open(self.status, self.nps_given, "NPS")
        self._trigger(RecommendationScored, ctx, **self._survey(score, survey.NPS_SCALE, comment))

    def _survey(self, score: int, scale: tuple[int, int], comment: str | None) -> dict[str, Any]:
        return survey.answer(score, scale, comment, agent=self.agent, department=self.department)

    def personal_targets(self, event: DomainEvent) -> Iterator[tuple[str, ...]]:
        """A message event's personal values are held by the message it names."""
        message_id = getattr(event, "message_id", None)
        if message_id is None:
            yield from super().personal_targets(event)
            return
        for name in event.personal_fields:
            if name in Message.personal_fields:
                yield ("messages", message_id, name)

    def _trigger(self, event_class: type[E], ctx: Context, **fields: Any) -> E:
        """Every conversation event names the customer, the data subject of its text."""
        fields.setdefault("customer_id", self.customer_id)
        return super()._trigger(event_class, ctx, **fields)

    def _require_open(self) -> None:
        if self.status != "open":
            raise ConversationClosedError(f"conversation {self.id} is closed")

    def _room_for(self, content: str, *, correction: bool = False) -> str:
        """`content`, if this conversation has room for it (`ConversationFullError`)."""
        entries, logged = len(self.messages), self._text_logged
        return room.room_for(self.id, entries, logged, content, correction=correction)

    def held_bytes(self) -> int:
        """Each entry, and its text sealed (base64: 4 bytes for 3)."""
        return super().held_bytes() + HELD_ENTRY * len(self.messages) + self._text_logged * 4 // 3

    # --- apply ------------------------------------------------------------------------

    def apply(self, event: DomainEvent) -> None:
        _when.apply(self, event)

    @_when(ConversationOpened)
    def _opened(self, e: ConversationOpened) -> None:
        self.customer_id, self.channel, self.subject = e.customer_id, e.channel, e.subject
        self.department, self.agent = e.department, e.agent
        self.participants = e.participants
        self.opened_at = e.occurred_at

    @_when(MessageLogged)
    def _message_logged(self, e: MessageLogged) -> None:
        self._text_logged += codec.text_size(e.content)
        self.messages[e.message_id] = Message(
            message_id=e.message_id,
            kind="message",
            direction=e.direction,
            author=e.author,
            content=e.content,
            sent_at=e.sent_at,
        )

    @_when(InternalNoteAdded)
    def _note_added(self, e: InternalNoteAdded) -> None:
        self._text_logged += codec.text_size(e.content)
        self.messages[e.message_id] = Message(
            message_id=e.message_id,
            kind="note",
            direction=None,
            author=e.author,
            content=e.content,
            sent_at=e.occurred_at,
        )

    @_when(MessageCorrected)
    def _corrected(self, e: MessageCorrected) -> None:
        self._text_logged += codec.text_size(e.content)
        old = self.messages[e.message_id]
        self.messages[e.message_id] = msgspec.structs.replace(
            old, content=e.content, corrected=True, reason=e.reason
        )

    @_when(MessageRetracted)
    def _retracted(self, e: MessageRetracted) -> None:
        """The entry stays (its id, kind and time, and why it was retracted), not what it
        said nor who said it: those belong to the history now (`/history`, for who may
        read it), as a corrected message's original text does."""
        old = self.messages[e.message_id]
        self.messages[e.message_id] = msgspec.structs.replace(
            old, author="", content="", retracted=True, reason=e.reason
        )

    @_when(ConversationHandedOff)
    def _handed_off(self, e: ConversationHandedOff) -> None:
        self.department, self.agent = e.to_department, e.to_agent
        if e.to_agent is not None and e.to_agent not in self.participants:
            self.participants = tuple(sorted((*self.participants, e.to_agent)))
        self.handoffs += 1

    @_when(ConversationClosed)
    def _closed(self, e: ConversationClosed) -> None:
        self.status, self.outcome, self.summary = "closed", e.outcome, e.summary
        self.closed_at = e.occurred_at
        self.closings += 1
        self.csat_given = self.nps_given = False

    @_when(ConversationReopened)
    def _reopened(self, e: ConversationReopened) -> None:
        self.status, self.outcome, self.summary, self.closed_at = "open", None, None, None

    @_when(SatisfactionRated)
    def _rated(self, e: SatisfactionRated) -> None:
        self.csat_given, self.last_csat = True, e.score

    @_when(RecommendationScored)
    def _scored(self, e: RecommendationScored) -> None:
        self.nps_given, self.last_nps = True, e.score
