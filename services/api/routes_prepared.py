"""What the framework works out again for every request, worked out once when the app is
built (`prepare_routes`): each route's exception handlers, and how a command route's
arguments are made.

* The router asks `resolve_exception_handlers()` of each request's route handler,
  which walks the handler's layers and merges their maps anew every time (its
  docstring says memoized; in this Litestar it is not): ~9,000 instructions a request.
  No layer's handlers change once the app is built.
* A command route (`services.api.deps.Call`: its path's parameters, perhaps a body, and
  the `call` dependency, nothing else) had its arguments made by the route's
  `KwargsModel`: an extractor a kind of parameter, one of them building the request's
  `Headers` for the If-Match and Idempotency-Key that `call` declares, then the
  dependency resolved through its signature model (a `msgspec.convert` of the request
  and both headers) and `Provide`: ~60,000 instructions a command in process
  (callgrind). `CommandArguments` makes the same arguments in the same order (the body
  decoded first, then `call`, whose If-Match and Idempotency-Key refusals come after a
  bad body's, as before) and hands the framework no dependency to resolve; the route's
  handler still gets its arguments through its own signature model. `call` still
  declares both headers, so the OpenAPI document, which is built from the handlers'
  and their dependencies' signatures, not from the routes' models, is unchanged.
  A route taking anything else (a query, a cookie, another dependency, a DTO, form
  data) keeps the framework's model.

I/O: none.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

from litestar import Litestar, Request
from litestar._kwargs import KwargsModel
from litestar._kwargs.dependencies import DependencyContainer
from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.types import Empty, ExceptionHandlersMap

CALL = "call"  # the command dependency's name (`services.api.deps.Call`)
_CALL_HEADERS = frozenset({"if_match", "idempotency_key"})  # what `call` declares
_RESERVED = frozenset({"data", "request"})


def prepare_routes(app: Litestar, call: Callable[[Request[Any, Any, Any]], object]) -> None:
    """Every route of `app` as above; `call` makes a command route's `call` argument
    from its request, as the `call` dependency's provider does."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, model) in route.route_handler_map.items():
            keep_exception_handlers(handler)
            if takes_command(handler, model):
                arguments = cast(KwargsModel, CommandArguments(model, call))  # its duck
                route.route_handler_map[method] = (handler, arguments)


def keep_exception_handlers(handler: HTTPRouteHandler) -> None:
    """`handler`'s exception handlers, resolved once and kept in its `__dict__`: the
    route decorators' handlers (`get`, `post`...) have one; the framework's own slotted
    ones (each path's automatic OPTIONS) keep resolving theirs."""
    if hasattr(handler, "__dict__"):
        resolved = handler.resolve_exception_handlers()
        handler.resolve_exception_handlers = partial(_kept, resolved)  # type: ignore[method-assign]  # the one answer, kept


def _kept(handlers: ExceptionHandlersMap) -> ExceptionHandlersMap:
    return handlers


def takes_command(handler: HTTPRouteHandler, model: KwargsModel) -> bool:
    """Whether the route takes its path's parameters, perhaps a JSON body, and `call`
    (with no dependency of its own), and nothing else."""
    batches = model.dependency_batches
    container = next(iter(batches[0])) if len(batches) == 1 and len(batches[0]) == 1 else None
    headers = {parameter.field_name for parameter in model.expected_header_params}
    own = set(handler.signature_model._fields) if handler.signature_model else set()
    return (
        _only_call(container)
        and model.expected_reserved_kwargs <= _RESERVED
        and headers <= _CALL_HEADERS
        and not headers & own
        and not (model.expected_query_params or model.expected_cookie_params)
        and model.expected_form_data is None
        and model.expected_msgpack_data is None
        and model.expected_data_dto is None
    )


def _only_call(container: DependencyContainer | None) -> bool:
    return container is not None and container.key == CALL and not container.dependencies


class CommandArguments:
    """A command route's `KwargsModel` as `HTTPRoute` uses it (`has_kwargs`,
    `to_kwargs`, `dependency_batches`): the arguments its extractors and the `call`
    dependency gave, but the headers `call` declares (which `call` reads itself)."""

    has_kwargs = True

    def __init__(
        self, model: KwargsModel, call: Callable[[Request[Any, Any, Any]], object]
    ) -> None:
        self.dependency_batches: list[set[DependencyContainer]] = []  # `call`: `to_kwargs`
        self._data = "data" in model.expected_reserved_kwargs
        self._path = tuple((p.field_alias, p.field_name) for p in model.expected_path_params)
        self._call = call

    async def to_kwargs(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        """The body (as the framework's JSON extractor reads it), the request, the path's
        parameters (parsed by the router), then `call`."""
        request = cast(Request[Any, Any, Any], connection)
        arguments: dict[str, Any] = {}
        if self._data:  # as the framework's `json_extractor`: no body is `Empty`
            arguments["data"] = await request.json() if await request.body() else Empty
        arguments["request"] = request
        parameters = connection.scope["path_params"]
        for alias, name in self._path:
            arguments[name] = parameters[alias]
        arguments[CALL] = self._call(request)
        return arguments
