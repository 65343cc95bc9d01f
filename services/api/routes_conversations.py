"""Conversation commands and reads: decode, call the service, encode."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Response, Router, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.conversation import Conversation
from services.api import schemas as s
from services.api.deps import Call, tagged
from services.api.reads import ReaderDep
from services.api.views import ConversationView, HistoryEntry
from services.commands import CommandResult

Answer = Response[CommandResult]
MinPosition = Annotated[
    int | None, QueryParameter(ge=0, description="wait until this position is applied")
]
ID = "/{conversation_id:uuid}"
WRITE = "conversation.write"


@post("/", status_code=201)
async def open_conversation(data: JSONBody[s.OpenConversation], call: Call) -> Answer:
    fields = data.fields()
    customer_id = fields.pop("customer_id")
    commands = call.services.commands
    return await call.run(
        lambda _: commands.open_conversation(call.caller, customer_id, **fields), data, 201
    )


@post(ID + "/messages", status_code=201)
async def log_message(
    conversation_id: FromPath[UUID], data: JSONBody[s.LogMessage], call: Call
) -> Answer:
    """Log an inbound/outbound message; the answer carries its new `message_id`."""
    commands = call.services.commands
    return await call.run(
        lambda expected: commands.log_message(
            call.caller, conversation_id, expected, **data.fields()
        ),
        data,
        201,
    )


@post(ID + "/notes", status_code=201)
async def add_note(
    conversation_id: FromPath[UUID], data: JSONBody[s.AddNote], call: Call
) -> Answer:
    commands = call.services.commands
    return await call.run(
        lambda expected: commands.add_note(call.caller, conversation_id, expected, data.content),
        data,
        201,
    )


@patch(ID + "/messages/{message_id:str}")
async def correct_message(
    conversation_id: FromPath[UUID],
    message_id: FromPath[str],
    data: JSONBody[s.CorrectMessage],
    call: Call,
) -> Answer:
    """Correct an entry; the original stays in history."""
    return await call.change(
        WRITE,
        Conversation,
        conversation_id,
        lambda c, ctx: c.correct_message(ctx, message_id, content=data.content, reason=data.reason),
        data,
    )


@delete(ID + "/messages/{message_id:str}", status_code=200)
async def retract_message(
    conversation_id: FromPath[UUID],
    message_id: FromPath[str],
    call: Call,
    reason: Annotated[str, QueryParameter(min_length=1, description="why it is retracted")],
) -> Answer:
    return await call.change(
        WRITE,
        Conversation,
        conversation_id,
        lambda c, ctx: c.retract_message(ctx, message_id, reason=reason),
        {"m": message_id, "r": reason},
    )


@post(ID + "/handoffs", status_code=200)
async def hand_off(
    conversation_id: FromPath[UUID], data: JSONBody[s.HandOff], call: Call
) -> Answer:
    return await call.change(
        WRITE, Conversation, conversation_id, lambda c, ctx: c.hand_off(ctx, **data.fields()), data
    )


@post(ID + "/close", status_code=200)
async def close(conversation_id: FromPath[UUID], data: JSONBody[s.Close], call: Call) -> Answer:
    return await call.change(
        WRITE, Conversation, conversation_id, lambda c, ctx: c.close(ctx, **data.fields()), data
    )


@post(ID + "/reopen", status_code=200)
async def reopen(conversation_id: FromPath[UUID], data: JSONBody[s.Reason], call: Call) -> Answer:
    return await call.change(
        WRITE, Conversation, conversation_id, lambda c, ctx: c.reopen(ctx, reason=data.reason), data
    )


@post(ID + "/csat", status_code=200)
async def csat(conversation_id: FromPath[UUID], data: JSONBody[s.Survey], call: Call) -> Answer:
    """A CSAT answer (1-5), credited to the department/agent of the interaction."""
    return await call.change(
        "conversation.survey",
        Conversation,
        conversation_id,
        lambda c, ctx: c.rate_satisfaction(ctx, score=data.score, comment=data.comment),
        data,
    )


@post(ID + "/nps", status_code=200)
async def nps(conversation_id: FromPath[UUID], data: JSONBody[s.Survey], call: Call) -> Answer:
    """An NPS answer (0-10), credited to the department/agent of the interaction."""
    return await call.change(
        "conversation.survey",
        Conversation,
        conversation_id,
        lambda c, ctx: c.score_recommendation(ctx, score=data.score, comment=data.comment),
        data,
    )


@get(ID, sync_to_thread=True)
def get_conversation(
    conversation_id: FromPath[UUID],
    reader: ReaderDep,
    min_position: MinPosition = None,
) -> Response[ConversationView]:
    return tagged(reader.conversation(conversation_id, min_position))


@get(ID + "/history", sync_to_thread=True)
def conversation_history(conversation_id: FromPath[UUID], reader: ReaderDep) -> list[HistoryEntry]:
    return reader.history(Conversation, conversation_id)


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
        conversation_history,
    ],
    tags=["conversations"],
)
