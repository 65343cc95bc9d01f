"""The headers every API answer carries, whatever route, status or error produced it.

API answers hold personal data in plaintext for the principal allowed to see it, and
are that principal's alone: no browser or cache may keep them (`no-store`; a browser
kept a customer's profile in its HTTP cache, readable with no token after the person
signed out). Nor may one be sniffed as another type or rendered as a page.

`ApiHeaders` wraps the whole ASGI app (outside routing and error handling, like the
request observer), so 401s, 404s and problem documents carry them too. A header the
answer sets itself wins: the console's static files keep their CSP and `no-cache`
revalidation (`services.console`), while its 404s get these. The OpenAPI UI (`/docs`,
which loads Swagger UI's scripts and styles) is left as it is.
I/O: none.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

API_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
OWN_HEADERS = ("/docs",)
"""Path prefixes whose answers are left as they are."""

_ENCODED = [(name.lower().encode(), value.encode()) for name, value in API_HEADERS.items()]


class ApiHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or _own(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                missing = [(n, v) for n, v in _ENCODED if n not in present]
                message["headers"] = [*message.get("headers", ()), *missing]
            await send(message)

        await self.app(scope, receive, with_headers)


def _own(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in OWN_HEADERS)
