"""The entries of a conversation (messages and internal notes) and how a command names
one: a new entry by an id of its own, a correction or retraction by a live entry's.

Pure: no I/O.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from domain import validation as check
from domain.base import AwareDatetime, InvalidTransition, ValidationFailed


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a conversation. Its author is personal: for an inbound message it is
    the customer (a name or an address)."""

    message_id: str
    kind: Literal["message", "note"]
    direction: str | None
    author: str
    content: str
    sent_at: AwareDatetime
    corrected: bool = False
    retracted: bool = False
    reason: str | None = None

    personal_fields: ClassVar[tuple[str, ...]] = ("author", "content", "reason")


def new_message_id(messages: dict[str, Message], message_id: str) -> str:
    """`message_id`, checked, if no entry of `messages` has it yet."""
    checked = check.path_id(message_id, "message_id")
    if checked in messages:
        raise ValidationFailed("message_id", f"message {checked!r} already exists")
    return checked


def live_message(messages: dict[str, Message], message_id: str) -> Message:
    """The entry `message_id` names, if it exists and was not retracted."""
    message = messages.get(message_id)
    if message is None:
        raise ValidationFailed("message_id", f"unknown message {message_id!r}")
    if message.retracted:
        raise InvalidTransition(f"message {message_id!r} was retracted")
    return message
