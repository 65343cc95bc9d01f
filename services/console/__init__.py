"""`/console`: the people's console, static files served by the API under a strict CSP.

The console is plain HTML, CSS and ES modules shipped inside this package (no build
step, no CDN) that call only the public HTTP API with the bearer token a person signs
in with, so it shows exactly what that principal may see. Its one chart library,
uPlot, is vendored at a pinned version (`static/vendor/uplot/VERSION`).

A path the console has no file for is a 404, whatever its bytes (`ConsoleFiles`).
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
from litestar.types import PathType
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
        include_in_schema=False,
    )
