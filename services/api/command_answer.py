"""An answer tagged with its version (`TaggedAnswer`): a command's `CommandResult`, or a
read's view, as JSON with its version as `ETag`, sent as Litestar's own `Response`
would send it, without building it through the framework's general path.

Litestar turns a route's `Response` into an `ASGIResponse` (`to_asgi_response`): it
merges the route's own headers, cookies and type encoders in, renders the content, and
sets `Content-Type` and `Content-Length` through `MutableScopeHeaders.setdefault`, which
for each raises and catches a `KeyError` after scanning the headers: ~55,000
instructions (callgrind) of the ~1,050,000 a command takes in process; a `Response`'s
own `__init__` checks its headers and cookies against `typing.Mapping` (an ABC check
through `typing`'s `__instancecheck__`). No command or read route adds anything of its
own to its answer, so `TaggedAnswer` sets the attributes `Response.__init__` would and
makes the `ASGIResponse` as that path leaves it: the headers `etag`, `content-type:
application/json`, `content-length` in that order, and the body as the framework's
encoder makes it (msgspec, with the framework's `enc_hook` for a type msgspec does not
encode itself: none of a `CommandResult`'s or a view's). When the route does add
something (a header, a cookie, a background task, a media type, type encoders), or the
answer is a HEAD's, the framework's own path makes it.
`tests/unit/services/test_command_answer.py` compares both, message by message and
attribute by attribute, for commands and for the views read routes answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
from litestar import Litestar, Request, Response
from litestar.background_tasks import BackgroundTask, BackgroundTasks
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import MediaType
from litestar.response.base import ASGIResponse
from litestar.serialization import default_serializer
from litestar.types import Receive, Scope, Send, TypeEncodersMap

from services.commands import CommandResult

T = TypeVar("T")
_encoder = msgspec.json.Encoder(enc_hook=default_serializer)  # the framework's `encode_json`
_CONTENT_TYPE = (b"content-type", MediaType.JSON.value.encode("latin-1"))
_STATUSES = frozenset({200, 201})  # a command's or a read's: each with a body


class TaggedAnswer(Response[T]):
    """`Response(content, status_code=status, headers={"ETag": '"<version>"'})` (status
    None: the route's own, as there)."""

    __slots__ = ()

    def __init__(self, content: T, version: int, status: int | None = None) -> None:
        # every attribute `Response.__init__` sets for these arguments, without its checks
        self.content = content
        self.background = None
        self.cookies = []
        self.encoding = "utf-8"
        self.headers = {"ETag": f'"{version}"'}
        self.media_type = None
        self.status_code = status
        self.response_type_encoders = {}

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        """What the framework's `to_asgi_response` gives, made at once when the route adds
        nothing to the answer; else the framework's."""
        added = background or cookies or encoded_headers or headers or is_head_response
        json = (self.media_type or media_type or MediaType.JSON) == MediaType.JSON  # as there
        ours = app is None and json and not (added or type_encoders) and self.plain()
        status = self.status_code or status_code  # as there
        if status is None or status not in _STATUSES or not ours:
            return super().to_asgi_response(
                app,
                request,
                background=background,
                cookies=cookies,
                encoded_headers=encoded_headers,
                headers=headers,
                is_head_response=is_head_response,
                media_type=media_type,
                status_code=status_code,
                type_encoders=type_encoders,
            )
        body = _encoder.encode(self.content)
        listed = [
            (b"etag", self.headers["ETag"].encode("latin-1")),
            _CONTENT_TYPE,
            (b"content-length", str(len(body)).encode("latin-1")),
        ]
        return Sent(status, listed, body)

    def plain(self) -> bool:
        """Whether this answer is still as `__init__` made it: its ETag alone, no cookie,
        background task or type encoder (an `after_request` hook may have changed it)."""
        return (
            self.headers.keys() == {"ETag"}
            and not self.cookies
            and self.background is None
            and self.encoding == "utf-8"
            and not self.response_type_encoders
        )


class CommandAnswer(TaggedAnswer[CommandResult]):
    """`Response(result, status_code=status, headers={"ETag": '"<version>"'})`."""

    __slots__ = ()

    def __init__(self, result: CommandResult, status: int) -> None:
        super().__init__(result, result.version, status)


class Sent(ASGIResponse):
    """An `ASGIResponse` as its `__init__` leaves one for a JSON body with these
    headers, none of them a cookie."""

    __slots__ = ()

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        # every attribute its base's `__init__` sets, without that one's header scans
        self.headers = MutableScopeHeaders({"headers": headers})
        self.background = None
        self.body = body
        self.content_length = len(body)
        self._encoded_cookies = ()
        self.encoding = "utf-8"
        self.is_head_response = False
        self.status_code = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What `ASGIResponse.__call__` sends for it (not a HEAD's, no background task):
        its start, then its body, without the three methods it awaits for them
        (`tests/unit/services/test_command_answer.py` compares the messages)."""
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.encode_headers(),
            }
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})
