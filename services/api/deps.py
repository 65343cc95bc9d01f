"""What route handlers receive: the authenticated caller, a command runner, a reader.

`CommandCall` is where If-Match and Idempotency-Key are honoured for every command,
so each route only builds its command (`services.*_commands`) and returns the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from uuid import UUID

import anyio
import msgspec
import structlog
from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.params import HeaderParameter

from domain.base import Aggregate, ValidationFailed
from domain.validation import whole_number
from services.access.model import AccessModel
from services.access.rules import Principal
from services.access_log import AccessLog
from services.api.command_answer import CommandAnswer, TaggedAnswer
from services.api.command_outcome import stored_nothing
from services.api.http_errors import BadRequest, Unauthenticated
from services.api.loop_reads import LoopReadModels
from services.api.observability import request_id_of
from services.api.parsed_queries import forget_parsed_queries
from services.api.read_models import ReadModels
from services.api.request_guard import only_line, sent_lines
from services.api.stream_slots import StreamSlots
from services.api.waiting import Positions
from services.command_base import Change, Creation
from services.commands import Caller, CommandResult, CommandService
from services.current_state import CurrentState
from services.event_store import CrmApplication
from services.fair_turns import FairTurn
from services.idempotency import (
    Idempotency,
    Reservation,
    StoredAnswer,
    check_key,
    lease_kept,
)
from services.idempotency_recovery import committed_answer
from services.principals import Principals
from services.storage_refusals import StorageRefusals

A = TypeVar("A", bound=Aggregate)
_encoder = msgspec.json.Encoder()
_result_decoder = msgspec.json.Decoder(CommandResult)


@dataclass
class Services:
    """Everything the HTTP layer uses, built once by `create_app`."""

    app: CrmApplication
    commands: CommandService
    principals: Principals
    idempotency: Idempotency
    access: AccessModel
    positions: Positions  # read-your-writes: `?min_position=` waits on the event loop
    current: CurrentState  # aggregates as stored now, read on the event loop
    streams: StreamSlots  # the event streams each principal holds open
    access_log: AccessLog | None = None  # who read whose personal data, unmasked
    # a customer's long answers, built on a worker thread one at a time (`api.reads`)
    long_answers: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(1))
    # whose long conversation answer builds its next slice (`api.conversation_reads`)
    long_turn: FairTurn = field(default_factory=FairTurn)
    # commands lately refused for lack of storage: `/readyz`'s `writes`
    storage_refusals: StorageRefusals = field(default_factory=StorageRefusals)

    def erased_elsewhere(self, customers: set[UUID]) -> None:
        """Another process erased these customers (`services.erasure_watch`): drop what
        the commands' cache holds, as the erasing process did (it holds it sealed, as
        kept customers do: with the keys gone they open as erased)."""
        self.commands.cache.clear()

    def sweep(self) -> None:
        """Drop what this process still holds past the requests that used it: idle
        aggregates lent to commands, and parsed query strings, which hold personal data
        in plaintext (the API runs this every second)."""
        self.commands.cache.sweep()
        forget_parsed_queries()

    def start_access_log(self) -> None:
        if self.access_log is not None:
            self.access_log.start()

    async def stop_access_log(self) -> None:
        """At shutdown: store the queued access records (a graceful stop loses none)."""
        if self.access_log is not None:
            await asyncio.to_thread(self.access_log.stop)

    stream_poll_seconds: float = 0.5
    queries: ReadModels | None = None  # None: no read models in this process
    queries_on_loop: LoopReadModels | None = None  # `queries`, run on the event loop


ServicesDep = NamedDependency[Services]
CallerDep = NamedDependency[Caller]


def bearer_token(request: Request[Any, Any, Any]) -> str:
    """The one place a token is read, for every route (the event stream re-checks it on
    each page). Two credentials are ambiguous, whichever is valid: a 400. They come as
    two header lines (`only_line`), or folded into one by a proxy or client library
    (`Bearer a, Bearer b`; httpx folds them): a bearer token (RFC 6750's token68) never
    holds a comma."""
    sent = only_line(sent_lines(request.scope, b"authorization"), "Authorization") or ""
    if "," in sent:
        raise BadRequest("send one Authorization header with one bearer token, not two")
    scheme, _, token = sent.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    return token.strip()


def caller_of(request: Request[Any, Any, Any]) -> Caller:
    """The caller the request guard authenticated (`RequestGuard`, with `authenticate`),
    first, before anything else of the request was parsed or read: what `reader` and
    `call` act for."""
    caller: Caller = request.scope["state"]["caller"]
    return caller


def caller_dependency(request: Request[Any, Any, Any], services: ServicesDep) -> Caller:
    """The `caller` dependency (`caller_of`). It takes `services`, which it does not use,
    so that the framework resolves the two one after the other: two dependencies of one
    level are resolved in an anyio task group, ~200 us of CPU a request."""
    return caller_of(request)


async def authenticate(request: Request[Any, Any, Any], services: Services) -> Caller:
    """The caller of `request`, without holding the event loop (`Principals.resolve`).
    Its events' `correlation_id` is the request's id, the one its log lines and its
    answer's X-Request-Id name (`observability.chosen_request_id`): never the header
    as sent."""
    principal = await services.principals.resolve(bearer_token(request))
    if principal is None:
        raise Unauthenticated("unknown or revoked token")
    structlog.contextvars.bind_contextvars(principal=principal.name)
    # for the request's log line (`RequestObserver`): what `request.state.principal = `
    # writes (the app gives every scope a state dict), without building a `State` for it
    request.scope["state"]["principal"] = principal.name
    return Caller(principal=principal, correlation_id=request_id_of(request.scope))


def parse_if_match(sent: Sequence[str]) -> int | None:
    """The version a command is conditional on, from its If-Match lines: `"3"` -> 3;
    `*` or none -> None (no precondition: `*` asks only that the aggregate exist,
    and a command on one that does not is a 404 anyway). RFC 9110 lets If-Match list
    entity tags, any of which may match, in one line or several (the same list); a
    command here is conditional on one version, so a list is a 400, never its first tag
    used. A weak tag (`W/"3"`) is a 400 too: If-Match compares strongly (RFC 9110,
    13.1.1), so it could never match, and this API gives only strong ones.

    Only a tag in the form `ETag` gives is read: a version in ASCII digits, quoted, no
    sign or leading zero (`validation.whole_number`). `3` unquoted (no entity tag at
    all), `"03"`, `"+3"`, `"3_0"`, `" 3"` or `"\xb2"` is a 400, not version 3 (Python's
    `int` reads most of them), since no `ETag` ever said so. A tag in that form that is
    not the current version (`"0"`, one far ahead) is the 409 of a stale one, with both
    versions: entity tags compare as opaque strings, and none but the current one
    matches."""
    if not sent:
        return None
    value = ",".join(sent)
    if len(listed := value.split(",")) > 1:
        raise BadRequest(
            f"If-Match takes one ETag (a command is conditional on one version), "
            f"not a list of {len(listed)}: {value[:40]!r}"
        )
    text = value.strip()
    if text == "*":
        return None
    if text.startswith("W/"):
        raise BadRequest(
            f'If-Match takes a strong ETag like "3", not the weak {value[:40]!r}: '
            f"If-Match compares strongly, so a weak ETag never matches (RFC 9110, 13.1.1)"
        )
    if len(text) > 1 and text[0] == text[-1] == '"':
        with suppress(ValidationFailed):
            return whole_number(text[1:-1], "If-Match")
    raise BadRequest(
        f'If-Match must be an ETag like "3" (a version as the ETag header gives it: '
        f"ASCII digits in quotes, no sign or leading zero), got {value[:40]!r}"
    )


@dataclass
class CommandCall:
    services: Services
    caller: Caller
    expected: int | None
    key: str | None
    request: Request[Any, Any, Any]  # its method and `canonical_path`: a keyed command's

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    async def change(
        self, target: UUID, command: Change[A], status: int = 200
    ) -> Response[CommandResult]:
        """A command on an existing aggregate, under If-Match and Idempotency-Key."""
        commands = self.services.commands
        return await self.run(
            lambda expected: commands.change(self.caller, target, command, expected=expected),
            command,
            status,
            target=target,
            extras=tuple(command.answer()),
        )

    async def create(self, command: Creation) -> Response[CommandResult]:
        """A command creating an aggregate (201), under Idempotency-Key. With an If-Match
        naming a version a 400: there is none to match yet, and the command ran as if
        the condition held."""
        if self.expected is not None:
            raise BadRequest(
                "If-Match names a version, and a command creating an aggregate has none "
                "to match: send it without If-Match (or with If-Match: *)"
            )
        commands = self.services.commands
        return await self.run(lambda _: commands.create(self.caller, command), command, 201)

    async def run(
        self,
        execute: Callable[[int | None], Awaitable[CommandResult]],
        body: object,
        status: int = 200,
        *,
        target: UUID | None = None,
        extras: tuple[str, ...] = (),
    ) -> Response[CommandResult]:
        """Run a command; under an Idempotency-Key at most once (`services.idempotency`,
        reached on worker threads). `target`: the aggregate it changes (None: the one it
        creates); `extras`: its answer's fields beyond id, version and position."""
        positions = self.services.positions
        if self.key is None:
            result = await execute(self.expected)
            positions.advance(result.position)
            return answer(result, status)
        idempotency = self.services.idempotency
        sent = self.request
        request = idempotency.fingerprint(sent.method, canonical_path(sent), _encoder.encode(body))
        held = await asyncio.to_thread(idempotency.begin, self.principal.name, self.key, request)
        if isinstance(held, StoredAnswer):
            return answer(_result_decoder.decode(held.body), held.status)
        self.caller = self.caller.keyed(held)
        # The key stays held unless the command's failure proves it stored nothing
        # (`_executed`): also when its answer cannot be stored (the key store
        # unreachable), and when finding a dead attempt's answer failed (its reservation
        # is the one its events and a created id derive from). A retry recovers the
        # committed answer once the lease expires (`_recovered`).
        async with lease_kept(idempotency, held):
            recovered = await self._recovered(held, target, extras)
            result = recovered or await self._executed(execute, held)
        positions.advance(result.position)
        stored = StoredAnswer(status, _encoder.encode(result))
        await asyncio.to_thread(idempotency.complete, held, stored)
        return answer(result, status)

    async def _executed(
        self, execute: Callable[[int | None], Awaitable[CommandResult]], held: Reservation
    ) -> CommandResult:
        """Run the keyed command; when it fails, release its key only if the failure
        proves it stored nothing (`command_outcome.stored_nothing`), so that a retry runs
        it again. After any other failure (the database gone while its batch committed,
        or not) a retry that ran it again could store it twice: a second message, a
        second customer (red team, a commit's answer lost in a PostgreSQL outage)."""
        try:
            return await execute(self.expected)
        except Exception as error:
            if stored_nothing(error):
                await asyncio.to_thread(self.services.idempotency.release, held)
            raise

    async def _recovered(
        self, held: Reservation, target: UUID | None, extras: tuple[str, ...]
    ) -> CommandResult | None:
        """When this attempt took the key over from a dead one: that one's committed
        answer, from the event store (`services.idempotency_recovery`)."""
        if not held.recovering:
            return None
        aggregate = self.caller.new_id() if target is None else target
        margin = self.services.idempotency.lease_seconds
        return await committed_answer(
            self.services.commands, aggregate, held, extras, margin=margin
        )


V = TypeVar("V", bound=msgspec.Struct)


def tagged(view: V) -> Response[V]:
    """A read with its version as ETag, ready for a following If-Match (`TaggedAnswer`:
    as `Response(view, headers={"ETag": ...})` sends it)."""
    return TaggedAnswer(view, getattr(view, "version", 0))


def answer(result: CommandResult, status: int) -> Response[CommandResult]:
    """`result` with its version as ETag (`CommandAnswer`: as `Response` sends it)."""
    return CommandAnswer(result, status)


IfMatch = Annotated[str | None, HeaderParameter(name="If-Match", required=False)]
IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key", required=False)]


def command_calls(services: Services) -> Callable[..., CommandCall]:
    """The `call` dependency, `services` bound to it by the composition root: taken as a
    dependency of its own, they were resolved through the framework's signature model,
    a batch before it, on every command. `if_match` and `idempotency_key` declare the
    headers (for the OpenAPI document); the framework gives the first of two lines, so
    `command_call` reads both from every line."""

    def call(
        request: Request[Any, Any, Any],
        if_match: IfMatch = None,  # declared; `command_call` reads every line
        idempotency_key: IdempotencyKey = None,  # likewise
    ) -> CommandCall:
        return command_call(request, services)

    return call


def command_call(request: Request[Any, Any, Any], services: Services) -> CommandCall:
    """The caller (`caller_of`: a request without a valid token was a 401 whatever else
    it sent), then its If-Match and Idempotency-Key."""
    caller = caller_of(request)
    scope = request.scope  # its header lines read as they are: no `Headers` built
    key = only_line(sent_lines(scope, b"idempotency-key"), "Idempotency-Key")
    if key is not None:
        check_key(key)
    return CommandCall(
        services=services,
        caller=caller,
        expected=parse_if_match(sent_lines(scope, b"if-match")),
        key=key,
        request=request,
    )


def canonical_path(request: Request[Any, Any, Any]) -> str:
    """The path an Idempotency-Key's fingerprint and a history's `Link` name: the route's,
    with the parameters it parsed, as this API spells them, not as sent. A retry
    spelling an id otherwise (upper case, without hyphens, in braces) is the same
    request, which answered 409 `idempotency-key-reused`. Two commands never share it:
    a route's parameter is one segment, never holding a `/` (a `%2F` is no route), and
    no two command routes of one method have templates that such segments could make
    equal (`tests/unit/services/test_canonical_command_path.py`). Not `request.url`:
    building a URL costs ~10 us."""
    template: str = request.scope["path_template"]
    return template.format_map(request.path_params)


Call = NamedDependency[CommandCall]
