"""Each path's automatic `OPTIONS` answers every method of the path in its `Allow`.

Litestar 2 (issue litestar-org/litestar#4169, fixed in 3) registers a router's handlers
one at a time: the first handler of a path makes an `HTTPRoute` and an `OPTIONS` handler
whose answer lists that route's methods; each later handler of the path makes a new
route holding the old handlers, that `OPTIONS` handler among them, so no new one is made
and it goes on answering the first route's methods (`/v1/customers`: `GET, OPTIONS`,
missing `POST`; red team s32 F4). The 405 of the same path, made from the final route,
lists them all. `answer_every_method` gives each final route's automatic handler the
function the framework makes for that route (`HTTPRoute.create_options_handler`); an
`OPTIONS` handler of our own would be left alone.
I/O: none.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.enums import HttpMethod
from litestar.routes import HTTPRoute

_OPTIONS = HttpMethod.OPTIONS


def answer_every_method(app: Litestar) -> None:
    """Every route's automatic `OPTIONS` handler answers the route's own methods."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or _OPTIONS not in route.route_handler_map:
            continue
        handler, _ = route.route_handler_map[_OPTIONS]
        fresh = route.create_options_handler(route.path).fn
        if handler.fn.__code__ is fresh.__code__:  # the framework's, not one of ours
            handler._fn = fresh  # a slot, no setter; same signature
