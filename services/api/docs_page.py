"""The OpenAPI UI at `/docs`: Swagger UI's script and styles, loaded from the CDN, each
pinned by Subresource Integrity, so a changed file (a compromised CDN or package) is
refused by the browser rather than run on the API's origin, where a person may have
pasted a bearer token into its "Authorize" dialog.

The hashes are of `swagger-ui-dist` at `SWAGGER_VERSION` as npm publishes it (the CDN
serves the package's files as published). To move to another version, compute them
from the package (its tarball's own sha512 is in the npm registry's metadata):

    curl -sO https://registry.npmjs.org/swagger-ui-dist/-/swagger-ui-dist-VERSION.tgz
    tar xzf swagger-ui-dist-VERSION.tgz
    openssl dgst -sha384 -binary package/FILE | base64 -w0

I/O: none.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.plugins import SwaggerRenderPlugin

SWAGGER_VERSION = "5.18.2"
SWAGGER_SHA384 = {
    "swagger-ui-bundle.js": "NXtFPpN61oWCuN4D42K6Zd5Rt2+uxeIT36R7kpXBuY9tLnZorzrJ4ykpqwJfgjpZ",
    "swagger-ui-standalone-preset.js": (
        "qr68CD0cvHa88PmVu7e1a58Ego4qvKtcvcLdS2a8Mo5zILI01gyIV9jVwJk7X2NU"
    ),
    "swagger-ui.css": "rcbEi6xgdPk0iWkAQzT2F3FeBJXdG+ydrawGlfHAFIZG7wU6aKbQaRewysYpmrlW",
}

FAVICON = "<link rel='icon' type='image/svg+xml' href='/console/favicon.svg'>"
"""The console's own (the framework's default is an image on a branch of a repository,
fetched from the CDN on every visit)."""


class PinnedSwagger(SwaggerRenderPlugin):
    """Litestar's Swagger UI page, at `SWAGGER_VERSION`, its three files pinned and
    nothing else loaded from another origin."""

    def __init__(self, path: str) -> None:
        super().__init__(version=SWAGGER_VERSION, path=path, favicon=FAVICON)
        urls = (self.js_url, self.standalone_preset_js_url, self.css_url)
        self._pinned = [
            (f'"{url}"'.encode(), SWAGGER_SHA384[url.rpartition("/")[2]]) for url in urls
        ]

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        page = super().render(request, openapi_schema)
        for quoted, sha384 in self._pinned:
            if page.count(quoted) != 1:  # the framework's page changed: pin by hand again
                raise RuntimeError(f"the docs page does not load {quoted.decode()} once")
            at = page.index(quoted) + len(quoted)
            tag = page[at : page.index(b">", at)]
            page = page[:at] + _attributes(sha384, cors=b"crossorigin" not in tag) + page[at:]
        return page


def _attributes(sha384: str, *, cors: bool) -> bytes:
    """What a cross-origin file needs to be checked: its hash, and a CORS request
    (without one the browser cannot read it to check, and refuses it), unless the tag
    asks for one already (Litestar's scripts do)."""
    cross_origin = ' crossorigin="anonymous"' if cors else ""
    return f' integrity="sha384-{sha384}"{cross_origin}'.encode()
