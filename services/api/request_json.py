"""How the API reads a request's JSON body: straight into the route's command, strictly,
with every number exactly as the client wrote it.

Litestar decodes a body into plain values, then converts them, with the route's path,
query and header parameters, into its handler's arguments with msgspec's lax
conversion (`strict=False`), which is right for parameters that only ever arrive as
text and wrong for a JSON body: a score or a percentage sent as text ("4", "4e0",
"40e-1", "4.9999999999999999", read through a float as 5) was stored as an integer, a
consent given as "true" or 1 as true, and a time sent as a number (`1e9`) as a Unix
timestamp. Here the body is decoded into the handler's `data` type at once, with
`strict=True`: each field takes the JSON type its schema says (an integer field a JSON
integer, a boolean `true` or `false`, a time an RFC 3339 string), else the 400 any
body that does not match its schema gets, naming the field. The framework's own
conversion then passes the decoded command through as it is.

A JSON number with a fraction or an exponent is read as `decimal.Decimal` where a field
takes any value (an amount, which the command keeps as sent for
`domain.validation.amount`): through a float, `0.10000000000000001` reached the domain
as `0.1`, and `1e400` was a float out of range. No command field is a float. A body
that is not UTF-8 (which JSON must be, RFC 8259) is a 400 too: msgspec raises
`UnicodeDecodeError` for it, not `DecodeError`, and it was a 500.

I/O: none (the body is already read when `json()` decodes it).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from functools import cache
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, SerializationException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import BaseRouteHandler
from litestar.types import Empty, EmptyType, HTTPReceiveMessage, Receive, ReceiveMessage

from services.api.request_guard import sent_lines

_untyped = msgspec.json.Decoder(float_hook=Decimal)
_WHERE = re.compile(r" - at `\$\.?(.*)`$")
"""Where msgspec says a value failed (`... - at `$.score``): `$` alone is the body."""


class ApiRequest(Request[Any, Any, Any]):
    """The request class of the API (`create_app`): Litestar's, with bodies decoded
    strictly into their command and numbers exact."""

    @property
    def content_length(self) -> int | None:
        """The declared `Content-Length`, as Litestar's `content_length` reads it (the
        first line, `int()` of it, its `ClientException` for one that is no number),
        from the scope's header lines: no `Headers` built for it
        (`request_guard.sent_lines`)."""
        known: int | EmptyType | None = self._content_length
        if known is not Empty:
            return known
        lines = sent_lines(self.scope, b"content-length")
        sent = lines[0] if lines else None
        try:
            declared = self._content_length = int(sent) if sent is not None else None
        except ValueError:
            raise ClientException(f"Invalid content-length: {sent!r}") from None
        return declared

    async def body(self) -> bytes:
        """The body, as Litestar's `Request.body()` gives it (its cache in the scope's
        state too), read by `whole_body`."""
        if self._body is Empty:
            if (body := self._connection_state.body) is not Empty:
                self._body = body
            else:
                self._body = self._connection_state.body = await self.whole_body()
        return self._body

    async def whole_body(self) -> bytes:
        """What Litestar's `b"".join(self.stream())` gives, refusing alike: a 413 for a
        declared `Content-Length` over the route's `request_max_body_size` before any
        read, or for more bytes received than it; an `InternalServerException` when the
        client is gone before the end (`http.disconnect`) or the body was read already.
        A body received in one message (every command under uvicorn) skips the stream's
        async generator and the comprehension over it. Any other first message is
        handed back to the stream (`replaying`), which reads from it on as it always
        does."""
        if not self.is_connected:
            return b"".join([chunk async for chunk in self.stream()])  # raises "consumed"
        declared = self.content_length
        limit = self.route_handler.resolve_request_max_body_size() or math.inf
        if declared is not None and declared > limit:
            raise RequestEntityTooLarge
        event: HTTPReceiveMessage = await self.receive()  # type: ignore[assignment]
        if event["type"] == "http.request" and not event.get("more_body", False):
            body = event["body"]
            if len(body) > limit:
                raise RequestEntityTooLarge
            self.is_connected = False
            return body
        self.receive = replaying(event, self.receive)
        return b"".join([chunk async for chunk in self.stream()])

    async def json(self) -> Any:
        """The body as the route's `data` (plain values for a route that takes none); a
        malformed body is Litestar's 400, as before."""
        decoder = body_decoder(self.route_handler)
        try:
            return decoder.decode(await self.body() or b"null")
        except msgspec.ValidationError as error:  # before DecodeError: a subclass of it
            raise schema_refusal(error) from error
        except msgspec.DecodeError as error:
            raise SerializationException(str(error)) from error
        except UnicodeDecodeError as error:  # raised for the body's bytes, nothing else
            detail = "JSON must be UTF-8: a string holds bytes that are no UTF-8 character"
            raise SerializationException(detail) from error


def replaying(first: ReceiveMessage, receive: Receive) -> Receive:
    """`receive`, with `first` (already received) given back before anything else."""
    pending = [first]

    async def received() -> ReceiveMessage:
        return pending.pop() if pending else await receive()

    return received


def body_decoder(handler: BaseRouteHandler) -> msgspec.json.Decoder[Any]:
    """The decoder of `handler`'s body: its `data` argument's type, strictly."""
    data = handler.parsed_fn_signature.parameters.get("data")
    return _untyped if data is None else _strict(data.annotation)


@cache  # one per command type, built on its first request
def _strict(body_type: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(body_type, strict=True, float_hook=Decimal)


def schema_refusal(error: msgspec.ValidationError) -> ValidationException:
    """The 400 the framework answers a body that does not match its schema with: what
    failed (msgspec's words) and where (`score`, `tags[0]`; `data`: the body itself)."""
    message, where = str(error), "data"
    if found := _WHERE.search(message):
        message, where = message[: found.start()], found.group(1) or "data"
    failed = {"message": message, "key": where, "source": "body"}
    return ValidationException(detail=f"Validation failed for body {where}", extra=[failed])
