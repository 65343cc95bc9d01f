"""How much one conversation may hold: its entries, their text and its participants.

Every read of a conversation, and of its history, carries all of its entries, so the
bounds are checked where a command asks for more (never when applying: an applier takes
what an event holds, whatever the bound is now). A longer exchange goes on in a new
conversation.

Pure: no I/O.
"""

from __future__ import annotations

from uuid import UUID

from domain import codec
from domain import fields as bound
from domain import validation as check
from domain.base import InvalidTransition, ValidationFailed


class ConversationFullError(InvalidTransition):
    """A conversation holds at most `MAX_ENTRIES` messages and notes, and
    `CONVERSATION_TEXT` bytes of them (UTF-8, corrections included; counted sealed or
    not, `codec.text_size`): every read of it, and
    of its history, carries all of them, so one client could otherwise make each read
    cost gigabytes (5,000 posts of 64 kB each, ~320 MB). A longer exchange goes on in a
    new conversation. So does one that would take more than `MAX_PARTICIPANTS` agents."""


def room_for(
    conversation_id: UUID, entries: int, text_logged: int, content: str, *, correction: bool
) -> str:
    """`content`, if a conversation holding `entries` entries and `text_logged` bytes of
    text has room for it (`ConversationFullError`); a correction adds no entry."""
    if not correction and entries >= bound.MAX_ENTRIES:
        raise ConversationFullError(
            f"conversation {conversation_id} holds {bound.MAX_ENTRIES} messages and notes, the"
            " most one may: go on in a new conversation"
        )
    if text_logged + codec.text_size(content) > bound.CONVERSATION_TEXT:
        raise ConversationFullError(
            f"conversation {conversation_id} would hold more than {bound.CONVERSATION_TEXT}"
            " bytes of messages, notes and corrections: go on in a new conversation"
        )
    return content


def require_room_for(
    conversation_id: UUID, participants: tuple[str, ...], agent: str | None
) -> None:
    """A hand-off to an agent not yet taking part makes them a participant: the
    bound is checked here, where the request names them, never when applying."""
    if agent is None or agent in participants:
        return
    if len(participants) >= bound.MAX_PARTICIPANTS:
        raise ConversationFullError(
            f"conversation {conversation_id} has {bound.MAX_PARTICIPANTS} participants, the"
            f" most one may: to_agent {agent!r} would be one more; hand it off to one of them"
            " or go on in a new conversation"
        )


def participants(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Sorted and unique, so the same people always give the same state (a decision's
    check: appliers take the names an event holds, whatever the bound is now)."""
    if len(names) > bound.MAX_PARTICIPANTS:
        raise ValidationFailed("participants", f"more than {bound.MAX_PARTICIPANTS}")
    return tuple(sorted({check.person(n, "participants") for n in names}))
