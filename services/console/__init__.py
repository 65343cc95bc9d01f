"""`/console`: the people's console, static files served by the API under a strict CSP.

The console is plain HTML, CSS and ES modules shipped inside this package (no build
step, no CDN) that call only the public HTTP API with the bearer token a person signs
in with, so it shows exactly what that principal may see. Its one chart library,
uPlot, is vendored at a pinned version (`static/vendor/uplot/VERSION`).

A path the console has no file for is a 404, whatever its bytes (`ConsoleFiles`).
Files are revalidated at every load (`no-cache`): a request whose `If-None-Match` names
the file's ETag is answered 304 with no body (`NotModified`).
Every console response carries `CONSOLE_HEADERS`: a Content-Security-Policy that allows
scripts, styles, images and connections from this origin only (no inline script, no
inline style element or attribute, no framing), plus the usual hardening headers.
I/O: reads the files under `static/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.file_system import BaseLocalFileSystem
from litestar.static_files import create_static_files_router
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    PathType,
    Receive,
    Scope,
    Send,
)
from litestar.types.file_types import FileInfo

STATIC = Path(__file__).with_name("static")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
CONSOLE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class ConsoleFiles(BaseLocalFileSystem):
    """The static files, where a name no file can have is a missing file. Litestar's
    own file system lets the OS's refusal escape as a 500: a NUL in the path (ValueError),
    a name or path too long, a file taken for a directory (OSError).
    The route's own check keeps every path inside `STATIC`."""

    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:
        try:
            return await super().info(path, **kwargs)
        except (ValueError, OSError) as error:
            raise FileNotFoundError(str(path)[:200]) from error


class NotModified:
    """Answers a console file 304 Not Modified when the request's `If-None-Match` names
    the ETag its 200 carries (RFC 9110, 13.1.2: weak comparison, or `*`), keeping the
    200's headers but its body's own. Litestar's static files send the ETag and never
    the 304, so a browser revalidating (`no-cache`) fetched every file again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = _entity_tags(scope)
        if not wanted:
            await self.app(scope, receive, send)
            return
        unmodified = False

        async def revalidated(message: Message) -> None:
            nonlocal unmodified
            if unmodified:
                return  # the file's body, which the 304 does not carry
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = list(message.get("headers", ()))
                etag = next((v for k, v in headers if k.lower() == b"etag"), None)
                if etag is not None and ("*" in wanted or _weak(etag.decode("latin-1")) in wanted):
                    unmodified = True
                    kept = [(k, v) for k, v in headers if k.lower() not in _BODY_HEADERS]
                    start: HTTPResponseStartEvent = {
                        "type": "http.response.start",
                        "status": 304,
                        "headers": kept,
                    }
                    empty: HTTPResponseBodyEvent = {
                        "type": "http.response.body",
                        "body": b"",
                        "more_body": False,
                    }
                    await send(start)
                    await send(empty)
                    return
            await send(message)

        await self.app(scope, receive, revalidated)


_BODY_HEADERS = frozenset((b"content-length", b"content-type", b"content-encoding"))


def _entity_tags(scope: Scope) -> frozenset[str]:
    """The tags a GET's or HEAD's `If-None-Match` lists, weak or not (`W/` dropped)."""
    if scope.get("method") not in ("GET", "HEAD"):
        return frozenset()
    values = [v for k, v in scope.get("headers", ()) if k.lower() == b"if-none-match"]
    listed = b",".join(values).decode("latin-1").split(",")
    return frozenset(_weak(tag.strip()) for tag in listed if tag.strip())


def _weak(tag: str) -> str:
    """A tag as weak comparison reads it (RFC 9110, 8.8.3.2): without its `W/`."""
    return tag.removeprefix("W/")


def _secured(response: Response[object]) -> Response[object]:
    response.headers.update(CONSOLE_HEADERS)
    return response


def console_router() -> Router:
    """`/console/` (index.html) and its assets; revalidated on every load (`no-cache`
    with ETags), so an upgraded server never runs against a stale module."""
    return create_static_files_router(
        path="/console",
        directories=[STATIC],
        file_system=ConsoleFiles(),
        html_mode=True,
        name="console",
        after_request=_secured,
        cache_control=CacheControlHeader(no_cache=True),
        middleware=[NotModified],
        include_in_schema=False,
    )
