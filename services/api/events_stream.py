"""`GET /v1/events/stream`: server-sent events of what the caller may read, masked.

Follows the event store's notification log (commit-ordered, gap-safe) by polling,
which works on SQLite as well as PostgreSQL. Each message's `id` is the global
position; `?after=<id>` replays from there, for roles that may read history (a position
beyond the store's head is a 400, as `min_position` is: none could ever follow it), as
does the `Last-Event-ID` header a reconnecting EventSource sends (ignored for the
other roles: their stream starts at the head, as it did when they first connected).
An EventSource sends back exactly the last id it got (the SSE standard), and an id is
written in ASCII digits, so either position written otherwise (`1e3`, `-0`, `007`, a
sign, non-ASCII digits, past 2**63 - 1) is a 400 for every role, before anything is
read (`services.api.request_guard`: the framework read `1e3` as 1000 and `-0` as 0).

Every event is judged by the one access model against its aggregate's state *as of that
event* (the state the event leaves behind), so visibility follows shares, unshares,
hand-offs and owner changes in both directions, and it is masked as a `GET` of that
state would be. A replayed event (one stored before the stream began) is judged by its
aggregate's state now as well (`AccessModel.past_event`): one the caller may no longer
read is left out, and a field hidden now (a consent withdrawn since) stays masked. Events
are read sealed: only the fields of those delivered that the
caller may see are ever opened. The stream re-authenticates its token on every page, so
a revoked token ends its open streams as soon as plain requests are refused (within the
principal cache's few seconds). A principal holds at most `CRM_STREAMS_PER_PRINCIPAL`
streams open per process (`services.api.stream_slots`): the next one is a 429. While
the access log cannot take a page's record (`AccessLogBacklogged`), the stream waits and
reads that page again: the caller sees it late, never unrecorded. So it does while the
database cannot be reached (its token cannot be checked nor its page read): it waits,
with the backoff of `consumers.outage`, and goes on from where it was once the database
is back, on the same connection. So it does, too, while a store it reads stays locked by
another connection past its wait (`services.api.store_troubles.busy`: another process holding
the embedded principals.db or keys.db, which answers plain requests a 503
`storage-busy`). A stream that ended there would have lost what was
stored before its client came back for the roles that start at the head, and an
EventSource gives up for good when its reconnection gets the outage's 503. Whatever it
waits for, it keeps writing its keep-alives (below): it went silent through an outage
(red team), and a proxy's idle timeout (nginx's 60 s) then ended it all the same.

When the server begins to stop (SIGTERM, SIGINT), every open stream ends its body at
once (`services.shutdown.SERVER_STOPPING`), a clean end, and its client reconnects with
`Last-Event-ID` (to another instance, or to this one once it is back). Before, the server
closed its port but waited for the streams' clients to leave, which they never do.

A stream's client must keep taking what it is sent. A quiet stream writes an SSE comment
(`: keep-alive`) every `KEEP_ALIVE_SECONDS`, so a client gone without a word (a NAT's
timeout, a laptop changing networks, a peer dropping packets) is found by writes that
fail, and proxies keep the connection. A client that holds the connection but stops
reading is given `SEND_SECONDS` to take each message (`bounded_sends`), then its stream
ends: either way its slot is given back, and the page it held (opened for it, and kept
past an erasure or a revocation only as long as that) goes. Without both, such clients
kept their slots until the process stopped: eight of them, one principal's 429 for good;
`CRM_STREAMS_MAX` of them, everyone's 503 (red team).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

import anyio
import msgspec
import structlog
from eventsourcing.persistence import Notification
from litestar import Request
from litestar.di import NamedDependency
from litestar.response import ServerSentEventMessage
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from consumers.outage import POSTGRES, Dependencies
from consumers.pg_pool import DATABASE_UNAVAILABLE
from domain import codec
from domain.base import DomainEvent
from services.access.fields import mask, unmasked
from services.access.resources import resource_of
from services.access.rules import Forbidden, Principal, rule_name
from services.access_log import AccessLogBacklogged, revealed
from services.api.deps import CallerDep, Services, ServicesDep, bearer_token
from services.api.http_errors import BadRequest
from services.api.store_troubles import busy
from services.commands import Caller
from services.shutdown import SERVER_STOPPING
from services.states_as_of import AggregatesAsOf

PAGE = 200  # the most events a page reads
PAGE_BYTES = 2**20
"""About the most a page reads of stored events: 200 messages of 60 kB made one page of
one stream take ~42 MiB at its peak (the rows, their events sealed and opened, the
documents); a page now reads as many rows as the previous page's fit in this."""
FIRST_PAGE = 16  # rows of a stream's first page, before it knows how long they are
ROUTE = "GET /v1/events/stream"  # what the access log names
KEEP_ALIVE_SECONDS = 15.0
"""A stream with nothing to send writes a comment this often (see the module)."""
SEND_SECONDS = 30.0
"""How long a stream's client may take to take one message before the stream ends (under
uvicorn the connection's own bound, `CRM_HTTP_SEND_SECONDS`, usually ends it first)."""
LOCKED = "locked store"  # what `Dependencies` names a store held locked (see the module)
KEEP_ALIVE = ServerSentEventMessage(data=None, comment="keep-alive")
log = structlog.get_logger("crm.events_stream")
_encoder = msgspec.json.Encoder()
Delivered = tuple[int, DomainEvent, dict[str, object]]


@dataclass
class EventStream:
    services: Services
    caller: Caller
    token: str
    rows: int = FIRST_PAGE  # what the next page reads (`rows_within`)

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    async def follow(
        self, department: str | None, after: int | None, last_event_id: int | None = None
    ) -> AsyncIterator[ServerSentEventMessage]:
        """Authorise now (so a refusal is a 4xx, not a broken stream), then stream.

        `last_event_id` (the `Last-Event-ID` a reconnecting EventSource sends) resumes
        as `after` does for roles that may read history; for the others the stream
        starts at the head, as on its first connection, since replaying what passed
        meanwhile is reading history (a 403 would end their EventSource for good)."""
        access, principal = self.services.access, self.principal
        scope = access.department_scope(principal, "events.read", department)
        if after is None and last_event_id is not None and access.may(principal, "history.read"):
            after = last_event_id
        if after is not None and not access.may(principal, "history.read"):
            rule = rule_name(principal, "history.read")
            raise Forbidden(rule, "replaying past events (after=) needs history.read")
        head = await self.services.current.head()  # on the loop, never holding it
        if after is not None and after > head:  # no stored event could ever follow it
            raise BadRequest(f"after {after} is beyond the event store's head")
        start = head if after is None else after
        return self.services.streams.open(
            principal.name, lambda release: self._messages(scope, start, head, release)
        )

    async def _messages(
        self, department: str | None, position: int, head: int, release: Callable[[], None]
    ) -> AsyncIterator[ServerSentEventMessage]:
        states = self.states()
        database = Dependencies(f"event stream of {self.principal.name}")
        quiet_since = anyio.current_time()
        try:
            while not SERVER_STOPPING.stopping:
                read = await self._read(database, department, position, states, head)
                if read is None:
                    return  # revoked: the stream ends as any other request is refused
                position, page, pause = read
                for notification_id, event, document in page:
                    data = _encoder.encode(document).decode()
                    yield ServerSentEventMessage(
                        data=data, event=event.wire_name(), id=str(notification_id)
                    )
                    quiet_since = anyio.current_time()
                # the pause, with a keep-alive whenever one is due: whatever it waits for
                until = anyio.current_time() + pause
                while True:
                    now = anyio.current_time()
                    if now - quiet_since >= KEEP_ALIVE_SECONDS:
                        yield KEEP_ALIVE
                        quiet_since = now
                    if now >= until:
                        break
                    wake = min(until, quiet_since + KEEP_ALIVE_SECONDS)
                    if await SERVER_STOPPING.wait(wake - now):
                        return  # the server stops: the body ends, its client reconnects
        finally:
            states.close()  # what it kept, given back to the streams' budget
            release()  # its slot (`StreamSlots`): the client went away, or the token did

    async def _read(
        self,
        database: Dependencies,
        department: str | None,
        position: int,
        states: AggregatesAsOf,
        head: int,
    ) -> tuple[int, list[Delivered], float] | None:
        """The next page's last position and events, and how long to pause before the
        one after; None once the token is revoked. A page that could not be read (see
        the module) is none at `position`, and the pause is the outage's backoff."""
        pause = self.services.stream_poll_seconds
        try:
            principal = await anyio.to_thread.run_sync(self._still_authorised)
            if principal is None:
                return None
            last, page = await anyio.to_thread.run_sync(
                self.page, principal, department, position, states, head
            )
        except AccessLogBacklogged:  # none of it delivered: again once stored
            return position, [], pause
        except DATABASE_UNAVAILABLE as error:  # none of it delivered either
            return position, [], database.lost(POSTGRES, error)
        except Exception as error:  # a store held locked (a backup, `sqlite3`)
            if not busy(error):
                raise
            return position, [], database.lost(LOCKED, error)
        database.back(POSTGRES)
        database.back(LOCKED)
        return last, page, (0.0 if last > position else pause)

    def states(self) -> AggregatesAsOf:
        """This stream's aggregates as of each event, within what all streams of the
        process keep together (`StreamSlots.states`, `CRM_STREAMS_CACHE_MB`)."""
        return AggregatesAsOf(self.services.app, self.services.streams.states)

    def _still_authorised(self) -> Principal | None:
        return self.services.principals.authenticate(self.token)

    def page(
        self,
        principal: Principal,
        department: str | None,
        position: int,
        states: AggregatesAsOf,
        replayed: int = 0,
    ) -> tuple[int, list[Delivered]]:
        """The next page's last position and the events in it `principal` may read: each
        judged by the state it left and, up to position `replayed` (the head when a
        replay began), by its aggregate's state now (`AccessModel.past_event`)."""
        app, access = self.services.app, self.services.access
        notifications = app.notification_log.select(position + 1, self.rows)
        self.rows = rows_within(PAGE_BYTES, notifications, self.rows)
        delivered: list[Delivered] = []
        shown: dict[UUID, set[str]] = {}
        log = self.services.access_log
        recording = log is not None and log.recording
        keyring = self.services.commands.keyring
        for notification in notifications:
            event = codec.sealed_event(notification)
            then = resource_of(states.after(event))
            if department is not None and department not in then.departments:
                continue
            now = partial(states.now, event) if notification.id <= replayed else None
            fields = access.past_event(principal, then, now)
            if fields is None:
                continue
            event = codec.unseal(event, keyring, unmasked(event.personal_fields, fields))
            if recording and (paths := revealed(event, event.personal_fields, fields)):
                shown.setdefault(event.data_subject, set()).update(paths)
            document = mask(msgspec.to_builtins(event), event.personal_fields, fields)
            delivered.append((notification.id, event, document))
        if shown and log is not None:
            log.reveal(principal, ROUTE, shown)
        return (notifications[-1].id if notifications else position), delivered


def bounded_sends(app: ASGIApp) -> ASGIApp:
    """The stream route's middleware: each message must be taken by the client within
    `SEND_SECONDS`. One that is not ends the stream as the client's leaving would (the
    framework is told the client disconnected: it stops the stream, whose slot and page
    go), and what is still to send is dropped. The server then closes the connection."""

    async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
        stalled = anyio.Event()

        async def send_within(message: Message) -> None:
            if stalled.is_set():
                return  # the stream is ending: nothing more reaches this client
            try:
                with anyio.fail_after(SEND_SECONDS):
                    await send(message)
            except TimeoutError:
                log.warning(
                    "event stream ended: its client took no message for SEND_SECONDS",
                    seconds=SEND_SECONDS,
                    client=str(scope.get("client")),
                )
                stalled.set()

        async def receive_or_stalled() -> ReceiveMessage:
            async with anyio.create_task_group() as waiting:
                received: list[ReceiveMessage] = []

                async def real() -> None:
                    received.append(await receive())
                    waiting.cancel_scope.cancel()

                waiting.start_soon(real)
                await stalled.wait()
                waiting.cancel_scope.cancel()
            return received[0] if received else {"type": "http.disconnect"}

        await app(scope, receive_or_stalled, send_within)

    return bounded


def rows_within(budget: int, notifications: Sequence[Notification], rows: int) -> int:
    """How many rows as long as `notifications` fit in `budget` bytes: at least one, at
    most `PAGE`; `rows` again when there were none to tell."""
    stored = sum(len(notification.state) for notification in notifications)
    if not stored:
        return rows
    return max(1, min(PAGE, budget * len(notifications) // stored))


def event_stream(
    request: Request[Any, Any, Any], services: ServicesDep, caller: CallerDep
) -> EventStream:
    return EventStream(services, caller, bearer_token(request))


StreamDep = NamedDependency[EventStream]
