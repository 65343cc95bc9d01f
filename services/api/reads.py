"""Reads of the event store: aggregate state straight from it (always current), queried
on the event loop (`services.current_state`): no worker thread per request; history and
as-of for auditors, rebuilt from the store on a worker thread. The read models' reads
(department views, timeline, search, statistics) are `services.api.list_reads`.

Every read asks the one access model (`services.access`): whether the caller may see
what it is about to return (an aggregate they may not read is a 404, like an unknown
id), and which personal fields to mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated, Any, TypeVar
from uuid import UUID

import anyio
from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from consumers.keyring import Keyring
from domain.base import Aggregate, DomainEvent
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from domain.validation import aware
from services.access.fields import FieldAccess, unmasked
from services.access.model import AccessModel
from services.access.resources import resource_of
from services.access.rules import Principal
from services.access_log import revealed
from services.api.conversation_reads import (
    ConversationAnswer,
    MessagePage,
    Revealed,
    Turns,
    conversation_answer,
    message_page,
)
from services.api.deps import Services, caller_of, canonical_path
from services.api.read_models import (
    Fetched,
    ReadModels,
    Row,
)
from services.api.views import (
    ConversationView,
    CustomerView,
    HistoryEntry,
    TaskView,
    customer_view,
    history_entry,
    task_view,
)
from services.cli_args import POSITION_LIMIT
from services.commands import Caller
from services.past_reads import PastReads, shown_in_events

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")
ListQuery = Callable[[ReadModels, str | None, int], Fetched]
"""Reads a list's next rows: after a cursor (None: from its start), how many."""
Shown = tuple[Row, list[str]]
"""A row as a page shows it (masked), and its personal columns shown (to open)."""

LOOP_ORDERS = 1_000
"""A customer holding more orders is viewed on a worker thread (one at a time:
`Services.long_answers`): viewing one costs ~0.8 us an order, so the most (`MAX_ORDERS`,
10,000) held the event loop for ~8 ms, and two clients reading one put another caller's
p99 at 135 ms (red team). A long conversation is built on the loop in slices instead
(`services.api.conversation_reads`)."""


@dataclass
class Reading:
    """One caller's reads in one request (`route`), whatever they read."""

    services: Services
    caller: Caller
    route: str = ""  # "GET /v1/customers/{customer_id}": what the access log names

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    @property
    def access(self) -> AccessModel:
        return self.services.access

    @property
    def keyring(self) -> Keyring:
        return self.services.commands.keyring

    @property
    def _recording(self) -> bool:
        """Whether reads are recorded (`CRM_ACCESS_LOG`): only then is what a response
        shows unmasked worked out, so a server not recording pays nothing for it."""
        log = self.services.access_log
        return log is not None and log.recording


@dataclass
class Reader(Reading):
    """The caller's reads of the event store: aggregates as they are now, and (auditors,
    managers: own) their history and state as of an instant."""

    async def customer(
        self, customer_id: UUID, as_of: datetime | None, min_position: int | None
    ) -> CustomerView:
        """Current state, or (auditors) the state at `as_of`, of a customer they may read."""
        instant = None if as_of is None else aware(as_of, "as_of")
        customer = await self._current(Customer, customer_id, min_position)  # sealed
        fields = self.access.read(self.principal, resource_of(customer), "as_of.read" * bool(as_of))
        if instant is not None:
            customer, fields = await off_loop(self._past.state, customer, instant)
        else:
            shown = unmasked(Customer.personal_fields, fields)
            customer = await self.services.current.opened(customer, shown)
        if self._recording:
            self._reveal({customer.id: revealed(customer, Customer.personal_fields, fields)})
        if len(customer.orders) <= LOOP_ORDERS:
            return customer_view(customer, fields)
        limiter = self.services.long_answers
        return await anyio.to_thread.run_sync(customer_view, customer, fields, limiter=limiter)

    async def conversation(
        self, conversation_id: UUID, min_position: int | None
    ) -> ConversationView:
        """A conversation with all its messages, built on the loop a slice at a time
        (`conversation_reads`: the long answers' slices take turns)."""
        return await self._conversation_read(conversation_id, min_position, conversation_answer)

    async def conversation_messages(
        self, conversation_id: UUID, page: tuple[str | None, int], min_position: int | None
    ) -> MessagePage:
        """A page of a conversation's messages (`page`: the cursor it starts after, None
        for the first, and at most how many), as the conversation's `GET` shows them."""
        answer = partial(message_page, page=page)
        return await self._conversation_read(conversation_id, min_position, answer)

    async def _conversation_read(
        self, conversation_id: UUID, min_position: int | None, answer: ConversationAnswer[T]
    ) -> T:
        """`answer` of the conversation, as the caller may read it; what it showed of
        personal data unmasked goes to the access log."""
        conversation = await self._current(Conversation, conversation_id, min_position)
        fields = self._fields(conversation)
        opener = await self._opener(conversation)
        reveals = Revealed(self._recording and conversation.customer_id is not None)
        turns = Turns(self.services.long_turn, self.principal.name)
        view = await answer(conversation, fields, opener, turns, reveals)
        if reveals.recording and conversation.customer_id:
            self._reveal({conversation.customer_id: reveals.in_order()})
        return view

    async def task(self, task_id: UUID, min_position: int | None) -> TaskView:
        task = await self._current(Task, task_id, min_position)
        fields = self._fields(task)
        view = task_view(task, fields, await self._opener(task))
        if self._recording and task.customer_id:
            self._reveal({task.customer_id: revealed(view, Task.personal_fields, fields)})
        return view

    async def history(
        self, kind: type[A], aggregate_id: UUID, page: HistoryPage
    ) -> Response[list[HistoryEntry]]:
        """A page of one aggregate's events with their metadata, oldest first (auditors;
        managers: own); a `Link` header names the next page when there is one. Each
        event is shown as the access model shows the past (`AccessModel.past_event`): one
        the caller could not read then is left out, so a page may hold fewer than `limit`."""
        now = await self.services.current.load(kind, aggregate_id)
        fields = self._fields(now, "history.read")
        judged, last = await off_loop(self._opened_history, now, fields, page)
        if self._recording:
            self._reveal(shown_in_events(judged))
        entries = [history_entry(event, access) for event, access in judged]
        return Response(entries, headers={} if last is None else page.link(last))

    def _opened_history(
        self, now: Aggregate, fields: FieldAccess, page: HistoryPage
    ) -> tuple[list[tuple[DomainEvent, FieldAccess]], int | None]:
        """The page's events the caller may see, judged (`PastReads.events`), and the
        version the next page starts after (None: this is the last page), read from one
        more stored event. On a worker thread: keys may be fetched."""
        app = self.services.app
        stored = app.sealed_history(now.id, after=page.cursor, limit=page.limit + 1)
        more = len(stored) > page.limit
        del stored[page.limit :]
        last = stored[-1].originator_version if more else None
        return list(self._past.events(now, fields, stored)), last

    async def _opener(self, aggregate: Conversation | Task) -> Callable[[str], str] | None:
        """Opens the personal values of a conversation or task (its customer's)."""
        subject = aggregate.customer_id
        return None if subject is None else await self.services.current.opener(subject)

    @property
    def _past(self) -> PastReads:
        """The caller's reads of the past (history, as of)."""
        return PastReads(self.services.app, self.keyring, self.access, self.principal)

    def _reveal(self, unmasked: Mapping[UUID, Iterable[str]]) -> None:
        """Record what this response shows unmasked (the access log skips the empty)."""
        if self.services.access_log is not None:
            self.services.access_log.reveal(self.principal, self.route, unmasked)

    def _fields(self, aggregate: Aggregate, action: str = "") -> Any:
        return self.access.read(self.principal, resource_of(aggregate), action)

    async def _current(self, kind: type[A], aggregate_id: UUID, min_position: int | None) -> A:
        """The aggregate as stored now; a `min_position` beyond the store's head is a 400
        (any position up to it is already visible to a read of the event store)."""
        await self.services.positions.within_head(min_position)
        return await self.services.current.load(kind, aggregate_id)


async def off_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A store call on a worker thread, so the event loop keeps serving."""
    return await anyio.to_thread.run_sync(partial(function, *args, **kwargs))


def readers(services: Services) -> Callable[[Request[Any, Any, Any]], Reader]:
    """The `reader` dependency, `services` bound to it by the composition root: taken as
    a dependency of its own, they were resolved through the framework's signature model,
    a batch before it, on every read."""

    def reader(request: Request[Any, Any, Any]) -> Reader:
        """The caller's reads (`caller_of`: not as a `caller` dependency of its own, which
        the framework would resolve through its signature model too)."""
        caller = caller_of(request)
        route = f"{request.method} {request.scope.get('path_template')}"
        return Reader(services, caller, route)

    return reader


ReaderDep = NamedDependency[Reader]

HISTORY_PAGE = 1_000
"""The most events a page of history holds, and how many it holds unless `limit` says
fewer: a customer's history has no bound (a conversation's and a task's have), and one
answer holding all of it would hold it all in memory at once."""


@dataclass(frozen=True)
class HistoryPage:
    """Which page of a history to answer: the events after version `cursor`."""

    cursor: int
    limit: int
    path: str  # the history's path, its id spelled as this API spells it (`of`)

    @classmethod
    def of(cls, request: Request[Any, Any, Any], cursor: int, limit: int) -> HistoryPage:
        """The page a history route was asked for. Its path is the route's, with the id
        the route parsed, not as sent: Python's `UUID` reads Unicode digits (fullwidth,
        Arabic-Indic), which the `Link` header, Latin-1, cannot carry (it was a 500)."""
        return cls(cursor, limit, canonical_path(request))

    def link(self, last: int) -> dict[str, str]:
        """The `Link` header (RFC 8288) naming the page after the one ending at `last`."""
        return {"Link": f'<{self.path}?cursor={last}&limit={self.limit}>; rel="next"'}


HistoryCursor = Annotated[
    int,
    QueryParameter(ge=0, le=POSITION_LIMIT, description="the last version of the previous page"),
]
HistoryLimit = Annotated[int, QueryParameter(ge=1, le=HISTORY_PAGE)]
MinPosition = Annotated[
    int | None, QueryParameter(ge=0, description="wait until this position is applied")
]
"""Query parameters the routes declare themselves: a second dependency beside `reader` (`lists`)
would have Litestar resolve the two in an anyio task group (~200 us of CPU a request)."""
