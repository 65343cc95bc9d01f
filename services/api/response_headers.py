"""The headers every API answer carries, whatever route, status or error produced it.

API answers hold personal data in plaintext for the principal allowed to see it, and
are that principal's alone: no browser or cache may keep them (`no-store`; a browser
kept a customer's profile in its HTTP cache, readable with no token after the person
signed out). Nor may one be sniffed as another type or rendered as a page.

The request observer (`services.api.observability.RequestObserver`, which wraps the
whole ASGI app, outside routing and error handling) adds them to every answer's start
(`with_api_headers`: one wrapper of `send` for both, not one each), so 401s, 404s and
problem documents carry them too. A header the answer sets itself wins: the console's
static files keep their CSP and `no-cache` revalidation (`services.console`), while its
404s get these. The OpenAPI UI (`/docs`) loads Swagger UI's scripts and styles from the
CDN (pinned, `services.api.docs_page`) and runs an inline script, which `default-src
'none'` would refuse: its pages get `DOCS_HEADERS`, which keep them out of frames (the
red team framed `/docs` on another origin, under its "Authorize" button) and
unsniffed, and send no Referer.
I/O: none.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def api_headers(path: str) -> list[tuple[bytes, bytes]]:
    """The headers an answer to `path` carries unless it sets them itself."""
    return _DOCS if path == DOCS or path.startswith(DOCS + "/") else _API


def with_api_headers(
    headers: Iterable[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """An answer's `headers`, then those of `added` it does not set itself."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *(header for header in added if header[0] not in present)]
