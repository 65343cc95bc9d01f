"""A conversation's messages as reads answer them: opened, masked and encoded a slice at
a time on the event loop, and a page of them (`GET /v1/conversations/{id}/messages`).

A conversation may hold `MAX_ENTRIES` (10,000) messages and notes, ~5.5 MB as JSON, and
anyone allowed to log messages can grow one that far. Opening and viewing a message costs
~10 us (two values decrypted, masked, converted), so a `GET` of the longest costs ~100 ms
of Python. Built on a worker thread it still held the GIL from the loop: Python hands the
GIL over only every 5 ms (`sys.getswitchinterval`), so each time the loop waited on a
socket it then waited up to 5 ms more, and eight clients reading such a conversation put
another principal's `GET` customer from a p50 of 2.7 ms to 19 ms (review F6). Here the
work stays on the loop, no thread hop, in slices of at most `SLICE` messages (~0.3 ms),
each in its turn: one long answer's slice at a time, the turn held until the loop has
served what waited meanwhile, and handed round the principals reading long answers
(`services.fair_turns`, as commands take an aggregate's turn). However many long reads
one principal keeps in flight, the loop runs at most one slice between serving everyone
else, and another principal's long read waits for one slice of each other principal's,
not for all of theirs. Each read's plaintext stays in its own request (nothing opened is
kept across requests). Each slice is encoded as it is
built, onto the one array the answer embeds, so what a long answer holds until it is sent
is its JSON, not its objects, and no part of it is copied again before the answer's own
encoding.

A page (`MessagePage`) answers at most `MESSAGE_PAGE` messages, and stops once it holds
`PAGE_TEXT` of their stored text: a client that wants a long conversation a bit at a time
reads it in pages of bounded cost. Its cursor names the conversation and how many
messages came before the page; entries are never removed nor reordered (a retraction or
correction changes one in place), so a cursor stays valid as the conversation grows.
I/O: none (the caller loads the conversation and its opener).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Annotated, NamedTuple, TypeVar
from uuid import UUID

import msgspec

from domain import fields as bound
from domain.conversation import Conversation
from domain.conversation_messages import Message
from services.access.fields import FieldAccess, mask, unmasked
from services.access_log import shown
from services.api.http_errors import BadRequest
from services.api.views import ConversationView, MessageView, conversation_view
from services.fair_turns import FairTurn

SLICE = 32
"""The most messages opened, masked and encoded in one go on the loop (~10 us each: ~0.3
ms), and (`SLICE_TEXT`) the most of their stored text, as a message may hold 64 kB. An
answer of one slice is built at once, with no turn to wait for."""
SLICE_TEXT = 32_000
MESSAGE_PAGE = 500
"""The most messages a page holds, and (`MESSAGE_PAGE_DEFAULT`) how many unless `limit`
says otherwise."""
MESSAGE_PAGE_DEFAULT = 100
CURSOR_LENGTH = 80
"""The longest `after` taken: a page's cursor is ~70 characters."""
PAGE_TEXT = 1_000_000
"""A page stops once its messages' stored text (sealed: authors, contents and reasons)
passes this many characters, as a timeline page stops at 1 MB: a message may hold 64 kB,
and a page of the largest would otherwise hold 4 MB. Always at least one message."""
PERSONAL = Conversation.personal_fields
T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_MessageViews = list[MessageView]
_Position = Annotated[int, msgspec.Meta(ge=1, le=bound.MAX_ENTRIES)]
_cursor = msgspec.json.Decoder(tuple[UUID, _Position])


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    """Messages of a conversation, oldest first; `next_cursor` (None: none left) is the
    `after` of the next page. `version` is the conversation's as this page was read."""

    conversation_id: UUID
    version: int
    messages: list[MessageView]
    next_cursor: str | None


class Revealed:
    """The personal paths a read shows unmasked with a value (`access_log.revealed`),
    gathered slice by slice (a path found is not sought again); `recording`: whether
    anyone asked (else none are sought)."""

    def __init__(self, recording: bool) -> None:
        self.recording = recording
        self.paths: set[str] = set()

    def add(self, item: object, access: FieldAccess) -> None:
        if self.recording and not access.everything:
            sought = [path for path in unmasked(PERSONAL, access) if path not in self.paths]
            self.paths.update(shown(item, sought))

    def in_order(self) -> list[str]:
        return [path for path in PERSONAL if path in self.paths]


async def conversation_answer(
    conversation: Conversation,
    access: FieldAccess,
    opener: Callable[[str], str] | None,
    turns: Turns,
    revealed: Revealed,
) -> ConversationView:
    """The conversation's view as `views.conversation_view` gives it, its messages
    built a slice at a time (`messages_json`) and held encoded (`msgspec.Raw`, which the
    answer's encoder writes as it is): the same JSON, byte for byte."""
    shell = Conversation.__new__(Conversation)  # a shallow copy: the kept one is not changed
    vars(shell).update(vars(conversation))
    shell.messages = {}
    envelope = conversation_view(shell, access, opener)
    revealed.add(envelope, access)
    messages = await messages_json(conversation.messages.values(), access, opener, turns, revealed)
    return msgspec.structs.replace(envelope, messages=messages)


class Turns(NamedTuple):
    """Whose long answer builds its next slice: `turn` handed round the principals
    (`FairTurn`), `principal` the caller's."""

    turn: FairTurn
    principal: str


ConversationAnswer = Callable[
    [Conversation, FieldAccess, Callable[[str], str] | None, Turns, Revealed], Awaitable[T]
]
"""What a read answers of a conversation: `conversation_answer`, a `message_page`."""


async def messages_json(
    messages: Iterable[Message],
    access: FieldAccess,
    opener: Callable[[str], str] | None,
    turns: Turns,
    revealed: Revealed,
) -> msgspec.Raw:
    """`messages` as an answer's JSON array: opened where `access` shows them, masked
    where it hides them (`access.mask`), a slice at a time, each in its turn when there
    are more than one. The turn is held across a yield to the loop, so that what waited
    meanwhile (other requests' callbacks, and the next slice of another long answer) is
    served before this answer's next slice."""
    array = bytearray()
    slices = _sliced(messages)
    first = next(slices, None)
    if first is None:
        return msgspec.Raw(b"[]")
    later = next(slices, None)
    if later is None:  # one slice: at once, no turn
        _add_slice(array, first, access, opener, revealed)
        return msgspec.Raw(array)
    for batch in itertools.chain((first, later), slices):
        await turns.turn.take(turns.principal)
        try:
            _add_slice(array, batch, access, opener, revealed)
            await asyncio.sleep(0)
        finally:
            turns.turn.give_back()
    return msgspec.Raw(array)


def _sliced(messages: Iterable[Message]) -> Iterator[list[Message]]:
    """`messages` a slice at a time: at most `SLICE` of them, and no more once a slice
    holds `SLICE_TEXT` of their stored text."""
    batch: list[Message] = []
    text = 0
    for message in messages:
        batch.append(message)
        text += _text(message)
        if len(batch) == SLICE or text >= SLICE_TEXT:
            yield batch
            batch, text = [], 0
    if batch:
        yield batch


def _text(message: Message) -> int:
    """The characters a message holds as stored (sealed): what opening it costs."""
    return len(message.author) + len(message.content) + len(message.reason or "")


def _add_slice(
    array: bytearray,
    batch: Sequence[Message],
    access: FieldAccess,
    opener: Callable[[str], str] | None,
    revealed: Revealed,
) -> None:
    """One slice's messages, as `conversation_view` shows them, encoded onto the end of
    `array` (a JSON array, or nothing yet): in place of its `]`, their array's `[` then
    made a comma. No slice is copied again."""
    documents = {"messages": [msgspec.to_builtins(m) for m in batch]}
    mask(documents, PERSONAL, access, opener)
    views = msgspec.convert(documents["messages"], _MessageViews, strict=False)
    revealed.add({"messages": views}, access)
    at = len(array) - 1 if array else 0
    _encoder.encode_into(views, array, at)
    if at:
        array[at] = ord(",")


async def message_page(
    conversation: Conversation,
    access: FieldAccess,
    opener: Callable[[str], str] | None,
    turns: Turns,
    revealed: Revealed,
    *,
    page: tuple[str | None, int],
) -> MessagePage:
    """The page of `conversation`'s messages after the cursor `page[0]` (None: from its
    first), at most `page[1]` of them and `PAGE_TEXT` of their text."""
    cursor, limit = page
    start = position_after(cursor, conversation)
    batch: list[Message] = []
    text = 0
    for message in itertools.islice(conversation.messages.values(), start, start + limit):
        if batch and text >= PAGE_TEXT:
            break
        batch.append(message)
        text += _text(message)
    end = start + len(batch)
    raw = await messages_json(batch, access, opener, turns, revealed)
    more = end < len(conversation.messages)
    return MessagePage(
        conversation_id=conversation.id,
        version=conversation.version,
        messages=raw,  # type: ignore[arg-type]  # encoded as it is (msgspec.Raw)
        next_cursor=page_cursor(conversation.id, end) if more else None,
    )


def page_cursor(conversation_id: UUID, position: int) -> str:
    """The cursor of the page starting after the first `position` messages."""
    encoded = _encoder.encode((conversation_id, position))
    return base64.urlsafe_b64encode(encoded).decode().rstrip("=")


def position_after(cursor: str | None, conversation: Conversation) -> int:
    """How many messages come before the page `cursor` names (a `page_cursor` of this
    conversation); anything else is a 400 naming it."""
    if cursor is None:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        named, position = _cursor.decode(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, msgspec.DecodeError):  # binascii.Error, UnicodeError are ValueErrors
        raise BadRequest(f"cursor {cursor[:40]!r} is not one this API gave") from None
    if named != conversation.id:
        raise BadRequest(f"cursor {cursor[:40]!r} is of another conversation")
    if position > len(conversation.messages):
        raise BadRequest(f"cursor {cursor[:40]!r} is past this conversation's messages")
    return position
