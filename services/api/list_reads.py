"""Reads of the read models (projections): department views, a customer's timeline,
search and statistics, which wait for `?min_position=N` on exactly the projections they
read (`services.api.waiting`) and are queried on the event loop
(`services.api.loop_reads`).

Read-model rows are judged one by one by the one access model (`services.access`), each
by the aggregate it shows, at the read model's position; a row whose aggregate has
events its read model has not applied yet (found with the page's rows, on PostgreSQL by
their own statement: `LoopReadModels.behind`) is judged by that aggregate's state now
as well (`AccessModel.listed(now=...)`), so a read model lagging behind (while a
consumer is down: without bound) never shows what a `GET` already hides. A page is made
of the rows kept alone, its `next_cursor` too (`read_models.Assembly`): one that left
rows out reads on, server-side. Their personal columns are stored sealed: hidden ones
are masked and never opened, visible ones are opened with the page's keys, fetched in
one query (`consumers.sealed_rows`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar import Request
from litestar.di import NamedDependency

from consumers.blind_index import BlindIndex, company_prefix
from consumers.sealed_rows import SUBJECT, open_cells, owners, sealed_cells
from domain.base import Aggregate
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task
from services.access.fields import FieldAccess, mask
from services.access.resources import Resource, resource_of
from services.access_log import rows_shown
from services.api.cursors import uuid_after
from services.api.deps import CallerDep, ServicesDep
from services.api.http_errors import ReadModelUnavailable
from services.api.loop_reads import LoopReadModels
from services.api.read_models import (
    PERSONAL,
    READS,
    ROWS,
    SEARCHED,
    Assembly,
    Fetched,
    Page,
    ReadModels,
    Row,
    Rows,
)
from services.api.reads import Reading, off_loop

ListQuery = Callable[[ReadModels, str | None, int], Fetched]
"""Reads a list's next rows: after a cursor (None: from its start), how many."""
Shown = tuple[Row, list[str]]
"""A row as a page shows it (masked), and its personal columns shown (to open)."""


@dataclass
class ListReader(Reading):
    """The caller's reads of the read models."""

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
        index = BlindIndex(await off_loop(self.keyring.search_key))  # kept once fetched
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

        return await self._listed(
            models, found, "customers", _customer_resource, searched, of=SEARCHED, **page
        )

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
        of: Rows | None = None,
    ) -> Page:
        """A page of the list `name` (`query` reads its rows after a cursor) made of the
        rows the caller may read (`_judged`) alone, items and `next_cursor` both
        (`read_models.Assembly`): a read that left rows out is read on after, server-side.
        Then the page's rows are opened and recorded (`_shown`). `of`: what its rows
        show, if not as `ROWS` says of `name`."""
        assembly: Assembly[Shown] = Assembly(name, limit)
        after, of = cursor, of or ROWS[name]
        while True:
            fetched, now = await self._read(
                models, query, of, resource=resource, searched=searched, after=after,
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
        of: Rows,
        *,
        resource: Callable[[Row], Resource],
        searched: Iterable[str],
        after: str | None,
        rows: int,
    ) -> tuple[Fetched, dict[UUID, Resource]]:
        """`rows` rows of a list (showing what `of` says) after the cursor `after`, and
        the state now of those whose aggregate has events their read model has not
        applied. Asked only of a caller whose view of a row could depend on its state now
        (a department's staff, anyone searching by a personal value; not an auditor
        listing, who reads every row alike: `AccessModel.listed_depends_on_state`)."""
        asks = self.access.listed_depends_on_state(self.principal, of.kinds, searched)
        fetched, behind = await models.behind(
            lambda m: query(m, after, rows), of if asks else None, self.principal.name
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
        principal, personal, listed = self.principal, PERSONAL[query], self.access.listed
        visible: dict[FieldAccess, list[str]] = {}  # a page meets one or two kinds
        judged: list[Shown | None] = []
        for row in rows:
            then = resource(row)  # `now` of it, if any (hashing a UUID is a Python call)
            fields = listed(principal, then, searched, now.get(then.id) if now else None)
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
            self._record(_uuids(customers), names)
        return [row for row, _ in shown]

    def _record(self, customers: list[UUID], fields: Iterable[str]) -> None:
        """Record that this response shows `fields` of `customers` unmasked (a page)."""
        if self.services.access_log is not None:
            self.services.access_log.record(self.principal, self.route, customers, fields)


KINDS: dict[str, type[Aggregate]] = {
    "customer": Customer,
    "conversation": Conversation,
    "task": Task,
}


def _customer_resource(row: Row) -> Resource:
    departments, customer = row["departments"], row["customer_id"]
    return Resource(
        kind="customer",
        id=customer if isinstance(customer, UUID) else _uuid(customer),  # no call a row
        owner=row["owner_department"],
        departments=frozenset(departments),  # a list on both stores (readmodel_queries)
        email_consent=bool(row.get("email_marketing")),
    )


def _work_resource(kind: str) -> Callable[[Row], Resource]:
    key = f"{kind}_id"

    def resource(row: Row) -> Resource:
        department, work = row["department"], row[key]
        return Resource(
            kind=kind,
            id=work if isinstance(work, UUID) else _uuid(work),  # no call a row
            owner=department,
            departments=frozenset((department,)),
        )

    return resource


def _entry_resource(row: Row) -> Resource:
    department, aggregate = row.get("department") or "", row["aggregate_id"]
    return Resource(
        kind=row["aggregate_type"],
        id=aggregate if isinstance(aggregate, UUID) else _uuid(aggregate),  # no call a row
        owner=department,
        departments=frozenset((department,)),
    )


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _uuids(values: Iterable[Any]) -> list[UUID]:
    """`_uuid` of each (written out: a page's are fifty calls)."""
    return [value if isinstance(value, UUID) else UUID(str(value)) for value in values]


def list_reader(
    request: Request[Any, Any, Any], services: ServicesDep, caller: CallerDep
) -> ListReader:
    return ListReader(services, caller, f"{request.method} {request.scope.get('path_template')}")


ListReaderDep = NamedDependency[ListReader]
