"""Conversation commands and reads: decode, call the service, encode."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, Router, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.conversation import Conversation
from services import conversation_commands as vc
from services.api.conversation_reads import (
    CURSOR_LENGTH,
    MESSAGE_PAGE,
    MESSAGE_PAGE_DEFAULT,
    MessagePage,
)
from services.api.deps import Call, tagged
from services.api.problem_table import COMMAND_PROBLEMS, READ_PROBLEMS
from services.api.reads import (
    HISTORY_PAGE,
    HistoryCursor,
    HistoryLimit,
    HistoryPage,
    MinPosition,
    ReaderDep,
)
from services.api.schemas import CorrectionBody
from services.api.views import ConversationView, HistoryEntry
from services.commands import CommandResult

Answer = Response[CommandResult]
ID = "/{conversation_id:uuid}"


@post("/", status_code=201, responses=COMMAND_PROBLEMS)
async def open_conversation(data: JSONBody[vc.OpenConversation], call: Call) -> Answer:
    """Open in the caller's department; staff become its agent unless another is named."""
    return await call.create(data)


@post(ID + "/messages", status_code=201, responses=COMMAND_PROBLEMS)
async def log_message(
    conversation_id: FromPath[UUID], data: JSONBody[vc.LogMessage], call: Call
) -> Answer:
    """Log an inbound/outbound message; the answer carries its `message_id`."""
    return await call.change(conversation_id, data, 201)


@post(ID + "/notes", status_code=201, responses=COMMAND_PROBLEMS)
async def add_note(
    conversation_id: FromPath[UUID], data: JSONBody[vc.AddNote], call: Call
) -> Answer:
    """An internal note by the caller; the answer carries its `message_id`."""
    return await call.change(conversation_id, data, 201)


@patch(ID + "/messages/{message_id:str}", responses=COMMAND_PROBLEMS)
async def correct_message(
    conversation_id: FromPath[UUID],
    message_id: FromPath[str],
    data: JSONBody[CorrectionBody],
    call: Call,
) -> Answer:
    """Correct an entry; the original stays in history."""
    command = vc.CorrectMessage(message_id=message_id, content=data.content, reason=data.reason)
    return await call.change(conversation_id, command)


@delete(ID + "/messages/{message_id:str}", status_code=200, responses=COMMAND_PROBLEMS)
async def retract_message(
    conversation_id: FromPath[UUID],
    message_id: FromPath[str],
    call: Call,
    reason: Annotated[str, QueryParameter(min_length=1, description="why it is retracted")],
) -> Answer:
    return await call.change(
        conversation_id, vc.RetractMessage(message_id=message_id, reason=reason)
    )


@post(ID + "/handoffs", status_code=200, responses=COMMAND_PROBLEMS)
async def hand_off(
    conversation_id: FromPath[UUID], data: JSONBody[vc.HandOff], call: Call
) -> Answer:
    return await call.change(conversation_id, data)


@post(ID + "/close", status_code=200, responses=COMMAND_PROBLEMS)
async def close(
    conversation_id: FromPath[UUID], data: JSONBody[vc.CloseConversation], call: Call
) -> Answer:
    return await call.change(conversation_id, data)


@post(ID + "/reopen", status_code=200, responses=COMMAND_PROBLEMS)
async def reopen(
    conversation_id: FromPath[UUID], data: JSONBody[vc.ReopenConversation], call: Call
) -> Answer:
    return await call.change(conversation_id, data)


@post(ID + "/csat", status_code=200, responses=COMMAND_PROBLEMS)
async def csat(
    conversation_id: FromPath[UUID], data: JSONBody[vc.RateSatisfaction], call: Call
) -> Answer:
    """A CSAT answer (1-5), credited to the department/agent of the interaction."""
    return await call.change(conversation_id, data)


@post(ID + "/nps", status_code=200, responses=COMMAND_PROBLEMS)
async def nps(
    conversation_id: FromPath[UUID], data: JSONBody[vc.ScoreRecommendation], call: Call
) -> Answer:
    """An NPS answer (0-10), credited to the department/agent of the interaction."""
    return await call.change(conversation_id, data)


@get(ID, responses=READ_PROBLEMS)
async def get_conversation(
    conversation_id: FromPath[UUID],
    reader: ReaderDep,
    min_position: MinPosition = None,
) -> Response[ConversationView]:
    """The conversation with every message and note it holds (up to 10,000, ~5.5 MB as
    JSON). A client that wants a long one a bit at a time reads
    `GET /v1/conversations/{conversation_id}/messages`, a page at a time."""
    return tagged(await reader.conversation(conversation_id, min_position))


MessagesAfter = Annotated[
    str | None,
    QueryParameter(
        max_length=CURSOR_LENGTH,
        description="the `next_cursor` of the previous page (none: from the first message)",
    ),
]
MessagesLimit = Annotated[
    int, QueryParameter(ge=1, le=MESSAGE_PAGE, description="the most messages the page holds")
]


@get(ID + "/messages", responses=READ_PROBLEMS)
async def conversation_messages(
    conversation_id: FromPath[UUID],
    reader: ReaderDep,
    after: MessagesAfter = None,
    limit: MessagesLimit = MESSAGE_PAGE_DEFAULT,
    min_position: MinPosition = None,
) -> Response[MessagePage]:
    """A page of the conversation's messages and notes, oldest first, each as
    `GET /v1/conversations/{conversation_id}` shows it (the same access and masking). A
    page holds at most `limit` of them and stops early once it holds ~1 MB of their text;
    `next_cursor` (null: none left) is the next page's `after`. A cursor of another
    conversation, or not one this API gave, is a 400. Entries are never removed or
    reordered, so a cursor stays good as the conversation grows; a correction or
    retraction changes an entry already read (`version` says which state a page shows)."""
    page = await reader.conversation_messages(conversation_id, (after, limit), min_position)
    return tagged(page)


@get(ID + "/history", responses=READ_PROBLEMS)
async def conversation_history(
    request: Request[Any, Any, Any],
    conversation_id: FromPath[UUID],
    reader: ReaderDep,
    cursor: HistoryCursor = 0,
    limit: HistoryLimit = HISTORY_PAGE,
) -> Response[list[HistoryEntry]]:
    """A conversation's events with their metadata, oldest first, a page at a time: a `Link`
    header names the next page while there is one."""
    return await reader.history(
        Conversation, conversation_id, HistoryPage.of(request, cursor, limit)
    )


conversations = Router(
    path="/conversations",
    route_handlers=[
        open_conversation,
        log_message,
        add_note,
        correct_message,
        retract_message,
        hand_off,
        close,
        reopen,
        csat,
        nps,
        get_conversation,
        conversation_messages,
        conversation_history,
    ],
    tags=["conversations"],
)
