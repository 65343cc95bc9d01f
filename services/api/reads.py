"""Reads: aggregate state straight from the event store (always current), history and
as-of for auditors, and the read models (department views, timeline, statistics), which
wait for `?min_position=N` on exactly the projections they read, on the event loop
(`services.api.waiting`). Current state and read models are queried on the event loop
too (`services.current_state`, `services.api.loop_reads`): no worker thread per request;
history and as-of (auditors) still rebuild from the store on a worker thread.

Every read asks the one access model (`services.access`): whether the caller may see
what it is about to return (an aggregate they may not read is a 404, like an unknown
id), and which personal fields to mask. Read-model rows are judged one by one, each by
the aggregate it shows, at the read model's position; a row whose aggregate has events
its read model has not applied yet (found by one query a page: `LoopReadModels.behind`)
is judged by that aggregate's state now as well (`AccessModel.listed(now=...)`), so a
read model lagging behind (while a consumer is down: without bound) never shows what a
`GET` already hides. A page is made of the rows kept alone, its `next_cursor` too
(`read_models.Assembly`): one that left rows out reads on, server-side. Their personal
columns are stored sealed: hidden ones are masked and never opened, visible ones are
opened with the page's keys, fetched in one query (`consumers.sealed_rows`).
"""

from __future__ import annotations

import asyncio
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

from consumers.blind_index import BlindIndex, company_prefix
from consumers.keyring import Keyring
from consumers.sealed_rows import SUBJECT, open_cells, owners, sealed_cells
from domain.base import Aggregate, DomainEvent
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from domain.validation import aware
from services.access import (
    AccessModel,
    FieldAccess,
    Principal,
    Resource,
    mask,
    resource_of,
    unmasked,
)
from services.access_log import revealed, rows_shown
from services.api.cursors import uuid_after
from services.api.deps import CallerDep, Services, ServicesDep, canonical_path
from services.api.errors import ReadModelUnavailable
from services.api.loop_reads import LoopReadModels
from services.api.read_models import (
    PERSONAL,
    READS,
    ROWS,
    Assembly,
    Fetched,
    Page,
    ReadModels,
    Row,
)
from services.api.views import (
    ConversationView,
    CustomerView,
    HistoryEntry,
    TaskView,
    conversation_view,
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

LOOP_MESSAGES = 100
"""A conversation holding more messages and notes is answered on a worker thread (one at
a time: `Services.long_answers`). Opening and viewing one costs ~10 us, so the longest
(`MAX_ENTRIES`, 10,000) would hold the event loop for ~150 ms; on a thread, Python hands
the loop its turns every 5 ms. A short one costs less than the hop to a thread."""
LOOP_ORDERS = 1_000
"""A customer holding more orders is viewed on a worker thread, as a long conversation
is: viewing one costs ~0.8 us an order, so the most (`MAX_ORDERS`, 10,000) held the event
loop for ~8 ms, and two clients reading one put another caller's p99 at 135 ms (red team)."""


@dataclass
class Reader:
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

    async def customer(
        self, customer_id: UUID, as_of: datetime | None, min_position: int | None
    ) -> CustomerView:
        """Current state, or (auditors) the state at `as_of`, of a customer they may read."""
        instant = None if as_of is None else aware(as_of, "as_of")
        customer = await self._current(Customer, customer_id, min_position)  # sealed
        fields = self.access.read(self.principal, resource_of(customer), "as_of.read" * bool(as_of))
        if instant is not None:
            customer, fields = await _off_loop(self._past.state, customer, instant)
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
        conversation = await self._current(Conversation, conversation_id, min_position)
        fields = self._fields(conversation)
        opener = await self._opener(conversation)

        def answer() -> ConversationView:
            view = conversation_view(conversation, fields, opener)
            if self._recording and conversation.customer_id:
                paths = revealed(view, Conversation.personal_fields, fields)
                self._reveal({conversation.customer_id: paths})
            return view

        if len(conversation.messages) <= LOOP_MESSAGES:
            return answer()
        limiter = self.services.long_answers
        return await anyio.to_thread.run_sync(answer, limiter=limiter)

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
        judged, last = await _off_loop(self._opened_history, now, fields, page)
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

    @property
    def _recording(self) -> bool:
        """Whether reads are recorded (`CRM_ACCESS_LOG`): only then is what a response
        shows unmasked worked out, so a server not recording pays nothing for it."""
        log = self.services.access_log
        return log is not None and log.recording

    def _reveal(self, unmasked: Mapping[UUID, Iterable[str]]) -> None:
        """Record what this response shows unmasked (the access log skips the empty)."""
        if self.services.access_log is not None:
            self.services.access_log.reveal(self.principal, self.route, unmasked)

    def _record(self, customers: list[UUID], fields: Iterable[str]) -> None:
        """Record that this response shows `fields` of `customers` unmasked (a page)."""
        if self.services.access_log is not None:
            self.services.access_log.record(self.principal, self.route, customers, fields)

    def _fields(self, aggregate: Aggregate, action: str = "") -> Any:
        return self.access.read(self.principal, resource_of(aggregate), action)

    async def _current(self, kind: type[A], aggregate_id: UUID, min_position: int | None) -> A:
        """The aggregate as stored now; a `min_position` beyond the store's head is a 400
        (any position up to it is already visible to a read of the event store)."""
        await self.services.positions.within_head(min_position)
        return await self.services.current.load(kind, aggregate_id)

    # --- read models (projections) ----------------------------------------------------

    async def timeline(self, customer_id: UUID, min_position: int | None, **page: Any) -> Page:
        """A customer's timeline; each entry only if its own conversation or task is
        readable by the caller (the read model's `department` of it)."""
        customer = await self.services.current.load(Customer, customer_id)
        self.access.read(self.principal, resource_of(customer), "timeline.read")
        models = await self._caught_up("timeline", min_position)
        department = self.access.entry_department(self.principal)
        return await self._listed(
            models,
            lambda m, cursor, rows: m.timeline(
                customer_id, department=department, cursor=cursor, limit=rows
            ),
            "timeline",
            _entry_resource,
            **page,
        )

    async def department(
        self, view: str, department: str, min_position: int | None, **filters: Any
    ) -> Page:
        """A page of one department's customers, conversations or tasks."""
        self.access.department_scope(self.principal, "department.read", department)
        models = await self._caught_up(view, min_position)
        cursor, limit = filters.pop("cursor"), filters.pop("limit")
        views: dict[str, tuple[ListQuery, Callable[[Row], Resource]]] = {
            "customers": (
                lambda m, after, rows: m.customers(department, cursor=after, limit=rows, **filters),
                _customer_resource,
            ),
            "conversations": (
                lambda m, after, rows: m.conversations(
                    department, cursor=after, limit=rows, **filters
                ),
                _work_resource("conversation"),
            ),
            "tasks": (
                lambda m, after, rows: m.tasks(department, cursor=after, limit=rows, **filters),
                _work_resource("task"),
            ),
        }
        query, resource = views[view]
        return await self._listed(models, query, view, resource, cursor=cursor, limit=limit)

    async def search(self, wanted: dict[str, str], min_position: int | None, **page: Any) -> Page:
        """Customers the caller may read matching every `wanted` field (`email`, `phone`,
        `name`, `company`, `tag`): the SQL keeps only the customers the access model says
        the caller may find by those fields (`AccessModel.findable`: their department's,
        those consenting...), then each row is judged like a list's."""
        models = await self._caught_up("search", min_position)
        searched = [name for name in wanted if name in Customer.personal_fields]
        findable = self.access.findable(self.principal, searched)
        index = BlindIndex(await _off_loop(self.keyring.search_key))  # kept once fetched
        fields = ("email", "phone", "name")
        terms = [term for f in fields if f in wanted for term in index.wanted(f, wanted[f])]
        company = company_prefix(wanted["company"]) if "company" in wanted else None
        if findable is None:  # a field the caller reads of no customer finds nobody,
            uuid_after(page.get("cursor"))  # once its input is checked as any search's
            return {"items": [], "next_cursor": None}
        tag = wanted.get("tag")

        def found(m: ReadModels, cursor: str | None, rows: int) -> Fetched:
            return m.search(
                terms=terms, company=company, tag=tag, findable=findable, cursor=cursor, limit=rows
            )

        return await self._listed(models, found, "customers", _customer_resource, searched, **page)

    async def stats(
        self, name: str, department: str | None, min_position: int | None, **filters: Any
    ) -> Row:
        """Statistics of one department (department-scoped roles: their own) or all."""
        scope = self.access.department_scope(self.principal, "stats.read", department)
        models, by = await self._caught_up(name, min_position), self.principal.name
        if name == "satisfaction":
            return await models.run(lambda m: m.satisfaction(department=scope, **filters), by)
        return await models.run(lambda m: m.task_stats(department=scope, **filters), by)

    async def _caught_up(self, query: str, min_position: int | None) -> LoopReadModels:
        """The read models (queried on the event loop: `services.api.loop_reads`), once the
        projections `query` reads have applied `min_position`."""
        models = self.services.queries_on_loop
        if models is None:
            raise ReadModelUnavailable(f"read model not available in this process ({query})")
        await self.services.positions.applied(READS[query], min_position)
        return models

    async def _listed(
        self,
        models: LoopReadModels,
        query: ListQuery,
        name: str,
        resource: Callable[[Row], Resource],
        searched: Iterable[str] = (),
        *,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """A page of the list `name` (`query` reads its rows after a cursor) made of the
        rows the caller may read (`_judged`) alone, items and `next_cursor` both
        (`read_models.Assembly`): a read that left rows out is read on after, server-side.
        Then the page's rows are opened and recorded (`_shown`)."""
        assembly: Assembly[Shown] = Assembly(name, limit)
        after = cursor
        while True:
            fetched, now = await self._read(
                models, query, name, resource=resource, searched=searched, after=after,
                rows=assembly.rows,
            )  # fmt: skip
            judged = self._judged(fetched["items"], name, resource, searched, now)
            after = assembly.take(fetched, judged)
            if after is None:
                break
        items, next_cursor = assembly.page()
        return {"items": await self._shown(items), "next_cursor": next_cursor}

    async def _read(
        self,
        models: LoopReadModels,
        query: ListQuery,
        name: str,
        *,
        resource: Callable[[Row], Resource],
        searched: Iterable[str],
        after: str | None,
        rows: int,
    ) -> tuple[Fetched, dict[UUID, Resource]]:
        """`rows` rows of the list `name` after the cursor `after`, and the state now of
        those whose aggregate has events their read model has not applied. Asked only of
        a caller whose view of a row could depend on its state now (a department's
        staff, anyone searching by a personal value; not an auditor listing, who reads
        every row alike: `AccessModel.listed_depends_on_state`)."""
        kinds = ROWS[name]
        asks = self.access.listed_depends_on_state(self.principal, kinds.kinds, searched)
        fetched, behind = await models.behind(
            lambda m: query(m, after, rows), kinds if asks else None, self.principal.name
        )
        now = await self._states_now(fetched, resource, behind) if behind else {}
        return fetched, now

    async def _states_now(
        self, page: Fetched, resource: Callable[[Row], Resource], behind: set[UUID]
    ) -> dict[UUID, Resource]:
        """The state now of each aggregate in `behind` that the page's rows show (kept
        aggregates: `services.current_state`), loaded side by side."""
        kinds = {r.id: r.kind for r in map(resource, page["items"]) if r.id in behind}
        current = self.services.current
        loaded = await asyncio.gather(*(current.load(KINDS[k], i) for i, k in kinds.items()))
        return {aggregate.id: resource_of(aggregate) for aggregate in loaded}

    def _judged(
        self,
        rows: list[Row],
        query: str,
        resource: Callable[[Row], Resource],
        searched: Iterable[str],
        now: Mapping[UUID, Resource],
    ) -> list[Shown | None]:
        """Of each row, what a page would show (None: the caller may not read it, or,
        found by the personal fields `searched`, read those of it), judged then and `now`
        where its aggregate has changed since (`AccessModel.listed`): the row with the
        personal columns the access model hides masked, and the columns it shows."""
        principal, personal = self.principal, PERSONAL[query]
        visible: dict[FieldAccess, list[str]] = {}  # a page meets one or two kinds
        judged: list[Shown | None] = []
        for row in rows:
            then = resource(row)
            fields = self.access.listed(principal, then, searched, now.get(then.id))
            if fields is None:
                judged.append(None)
                continue
            columns = visible.get(fields)
            if columns is None:
                columns = visible[fields] = [c for c in personal if not fields.hides(c)]
            judged.append((mask(row, personal, fields), columns))
        return judged

    async def _shown(self, shown: list[Shown]) -> list[Row]:
        """A page's rows as answered: the shown columns opened (with the page's keys,
        fetched now in one query on the loop, if any is sealed), and what they show
        unmasked recorded in the access log."""
        if cells := sealed_cells(shown):
            keys = await self.services.current.keys_now(owners(cells))
            open_cells(keys, cells)
        if self._recording:
            customers, names = rows_shown(shown, SUBJECT)
            self._record([_uuid(c) for c in customers], names)
        return [row for row, _ in shown]


async def _off_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A store call on a worker thread, so the event loop keeps serving."""
    return await anyio.to_thread.run_sync(partial(function, *args, **kwargs))


KINDS: dict[str, type[Aggregate]] = {
    "customer": Customer,
    "conversation": Conversation,
    "task": Task,
}


def _customer_resource(row: Row) -> Resource:
    departments = row["departments"]
    return Resource(
        kind="customer",
        id=_uuid(row["customer_id"]),
        owner=row["owner_department"],
        departments=frozenset(departments),  # a list on both stores (readmodel_queries)
        email_consent=bool(row.get("email_marketing")),
    )


def _work_resource(kind: str) -> Callable[[Row], Resource]:
    key = f"{kind}_id"

    def resource(row: Row) -> Resource:
        department = row["department"]
        return Resource(
            kind=kind, id=_uuid(row[key]), owner=department, departments=frozenset((department,))
        )

    return resource


def _entry_resource(row: Row) -> Resource:
    department = row.get("department") or ""
    return Resource(
        kind=row["aggregate_type"],
        id=_uuid(row["aggregate_id"]),
        owner=department,
        departments=frozenset((department,)),
    )


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def reader(request: Request[Any, Any, Any], services: ServicesDep, caller: CallerDep) -> Reader:
    return Reader(services, caller, f"{request.method} {request.scope.get('path_template')}")


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
"""Query parameters the routes declare themselves: a second dependency beside `reader`
would have Litestar resolve the two in an anyio task group (~200 us of CPU a request)."""
