"""`GET /v1/events/stream`: server-sent events of what a department may see, masked.

Follows the event store's notification log (commit-ordered, gap-safe) by polling,
which works on SQLite as well as PostgreSQL. Each message's `id` is the global
position, so a client resumes with `?after=<last id>`. An event belongs to the
departments it names plus those of its aggregate (owner/shared for customers,
handling department for conversations and tasks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import cast
from uuid import UUID

import anyio
import msgspec
from litestar.di import NamedDependency
from litestar.response import ServerSentEventMessage

from domain.base import AGGREGATE_CLASSES, DomainEvent, NotFound
from services.api.deps import CallerDep, Services, ServicesDep
from services.commands import Caller, departments_of
from services.policy import Principal, Scope, authorize, mask, scope_of

PAGE = 200
POLL_SECONDS = 0.5
_DEPARTMENT_FIELDS = ("department", "owner_department", "to_department", "from_department")
_encoder = msgspec.json.Encoder()


@dataclass
class EventStream:
    services: Services
    caller: Caller
    _departments: dict[UUID, frozenset[str]] = field(default_factory=dict)

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    def follow(
        self, department: str | None, after: int | None
    ) -> AsyncIterator[ServerSentEventMessage]:
        """Authorise now (so a refusal is a 403, not a broken stream), then stream."""
        if department is None and scope_of(self.principal, "events.read") is not Scope.ANY:
            department = self.principal.department  # department-scoped roles: their own
        authorize(self.principal, "events.read", () if department is None else (department,))
        start = self.services.app.head_position() if after is None else after
        return self._messages(department, start)

    async def _messages(
        self, department: str | None, position: int
    ) -> AsyncIterator[ServerSentEventMessage]:
        while True:
            last, page = await anyio.to_thread.run_sync(self._page, department, position)
            for notification_id, event in page:
                yield self._message(notification_id, event)
            if last > position:
                position = last
            else:
                await anyio.sleep(POLL_SECONDS)

    def _page(
        self, department: str | None, position: int
    ) -> tuple[int, list[tuple[int, DomainEvent]]]:
        """The next page's last position and the events in it this stream may show."""
        app = self.services.app
        notifications = app.notification_log.select(position + 1, PAGE)
        events = [(n.id, cast(DomainEvent, app.mapper.to_domain_event(n))) for n in notifications]
        visible = [(i, e) for i, e in events if department is None or department in self._of(e)]
        return (notifications[-1].id if notifications else position), visible

    def _of(self, event: DomainEvent) -> frozenset[str]:
        named = {d for f in _DEPARTMENT_FIELDS if isinstance(d := getattr(event, f, None), str)}
        known = self._departments.get(event.originator_id)
        if known is None:
            known = frozenset(self._load_departments(event))
            self._departments[event.originator_id] = known
        self._departments[event.originator_id] = known | named
        return known | named

    def _load_departments(self, event: DomainEvent) -> Iterable[str]:
        kind = AGGREGATE_CLASSES[event.aggregate_type]
        try:
            return departments_of(self.services.app.load(kind, event.originator_id))
        except NotFound:
            return ()

    def _message(self, notification_id: int, event: DomainEvent) -> ServerSentEventMessage:
        document = mask(self.principal, msgspec.to_builtins(event))
        data = _encoder.encode(document).decode()
        return ServerSentEventMessage(data=data, event=event.wire_name(), id=str(notification_id))


def event_stream(services: ServicesDep, caller: CallerDep) -> EventStream:
    return EventStream(services, caller)


StreamDep = NamedDependency[EventStream]
