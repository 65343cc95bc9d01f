"""The headers every API answer carries, whatever route, status or error produced it.

API answers hold personal data in plaintext for the principal allowed to see it, and
are that principal's alone: no browser or cache may keep them (`no-store`; a browser
kept a customer's profile in its HTTP cache, readable with no token after the person
signed out). Nor may one be sniffed as another type or rendered as a page.

`ApiHeaders` wraps the whole ASGI app (outside routing and error handling, like the
request observer), so 401s, 404s and problem documents carry them too. A header the
answer sets itself wins: the console's static files keep their CSP and `no-cache`
revalidation (`services.console`), while its 404s get these. The OpenAPI UI (`/docs`)
loads Swagger UI's scripts and styles from the CDN (pinned, `services.api.docs_page`)
and runs an inline script, which `default-src 'none'` would refuse: its pages get
`DOCS_HEADERS`, which keep them out of frames (the red team framed `/docs` on another
origin, under its "Authorize" button) and unsniffed, and send no Referer.
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
DOCS_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"
    ),
}
DOCS = "/docs"


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


_API, _DOCS = _encoded(API_HEADERS), _encoded(DOCS_HEADERS)


class ApiHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        added = _DOCS if path == DOCS or path.startswith(DOCS + "/") else _API

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                missing = [(n, v) for n, v in added if n not in present]
                message["headers"] = [*message.get("headers", ()), *missing]
            await send(message)

        await self.app(scope, receive, with_headers)
