"""The HTTP API's composition: `create_app(runtime)` builds the Litestar app.

Everything the routes need is built here once from the runtime (command service with
group commit, principals, idempotency store, metrics) and handed to the handlers as
dependencies; routes live under `/v1`, operations (`/healthz`, `/readyz`, `/metrics`)
at the root and under `/v1`, the OpenAPI UI at `/docs` and the schema at `/openapi.json`,
the console for people at `/console` (`services.console`). Every answer but the
console's and the docs' says store nothing (`services.api.response_headers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import structlog
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from services.access_log import AccessLog
from services.access_log_store import open_access_store
from services.aggregate_cache import AggregateCache
from services.api.deps import (
    Services,
    authenticate,
    caller_dependency,
    command_call,
    command_calls,
)
from services.api.docs_page import PinnedSwagger
from services.api.error_responses import EXCEPTION_HANDLERS
from services.api.events_stream import event_stream
from services.api.list_reads import list_reader
from services.api.loop_reads import current_state_of, read_models_on_loop
from services.api.observability import Metrics, RequestObserver
from services.api.options_allow import answer_every_method
from services.api.pipeline_metrics import register_pipeline_metrics
from services.api.read_models import ReadModels
from services.api.read_positions import AppliedPosition
from services.api.readiness import DependencyProbe, ReadinessCheck, default_checks
from services.api.reads import readers
from services.api.request_guard import MAX_BODY_BYTES, RequestGuard
from services.api.request_json import ApiRequest
from services.api.response_headers import api_headers
from services.api.routes_audit import AUDIT
from services.api.routes_conversations import conversations
from services.api.routes_customers import customers
from services.api.routes_ops import OPS
from services.api.routes_ping import ping
from services.api.routes_prepared import prepare_routes
from services.api.routes_queries import queries
from services.api.routes_tasks import tasks
from services.api.stream_slots import StreamSlots
from services.api.waiting import Positions
from services.bootstrap import Runtime
from services.commands import CommandService, Committer
from services.console import console_router
from services.current_state import CurrentState
from services.erasure_sweep import ErasureSweep
from services.erasure_watch import ErasureWatch
from services.group_commit import GroupCommitter
from services.idempotency import open_idempotency
from services.principals import Principals
from services.principals_store import open_principals

log = structlog.get_logger("crm.api")


def create_app(
    runtime: Runtime,
    *,
    committer: Committer | None = None,
    principals: Principals | None = None,
    queries_helper: ReadModels | None = None,
    applied_position: AppliedPosition | None = None,
    readiness: dict[str, ReadinessCheck] | None = None,
) -> Litestar:
    """The API over `runtime`. `queries_helper` (the read models) and `applied_position`
    (how far their projections got) wire the department views, timeline and statistics;
    without them those answer 501."""
    probe = DependencyProbe(runtime)
    metrics = Metrics(probe.guarded(runtime.app.head_position))
    current, pg_reads = current_state_of(runtime)  # reads on the loop: services.api.loop_reads
    services = build_services(
        runtime, metrics, committer, principals, applied_position, current=current
    )
    services.queries = queries_helper
    metrics.gauge(
        "crm_commands_cache_bytes",
        "Bytes the commands' cache of aggregates holds, by their estimate",
        lambda: services.commands.cache.held,
    )
    metrics.gauge(
        "crm_kept_aggregates_bytes",
        "Bytes the aggregates kept for reads hold, by their estimate",
        lambda: current.held,
    )
    metrics.gauge(
        "crm_stream_states_bytes",
        "Bytes the event streams' aggregates hold together, by their estimate",
        lambda: services.streams.states.held,
    )
    sweeping, unsweeping = _in_background(partial(_every, SWEEP_SECONDS, services.sweep))
    erasures = ErasureSweep(runtime.app, runtime.keyring, services.erased_elsewhere)
    starting = [services.start_access_log, sweeping, erasures.start]
    closing = [
        services.commands.committer.aclose,
        services.stop_access_log,
        unsweeping,
        erasures.stop,
    ]
    if queries_helper is not None:
        services.queries_on_loop = read_models_on_loop(
            queries_helper, pg_reads, runtime.app.recorder, runtime.settings.read_query_seconds
        )
        closing.append(services.queries_on_loop.aclose)
    if pg_reads is not None:
        watch = ErasureWatch(pg_reads, runtime.keyring, services.erased_elsewhere)
        starting.append(watch.start)
        closing += [watch.stop, pg_reads.aclose]
    store = None if queries_helper is None else queries_helper.store
    register_pipeline_metrics(metrics.registry, runtime, store, probe)
    checks = default_checks(runtime, probe, store, applied_position, services.storage_refusals)
    checks |= readiness or {}
    if services.access_log is not None:
        checks["access_log"] = services.access_log.backlog
    guard = RequestGuard(partial(authenticate, services=services))
    app = Litestar(
        route_handlers=[
            Router(
                "/v1",
                route_handlers=[customers, conversations, tasks, queries, ping, *OPS, *AUDIT],
            ),
            *OPS,
            console_router(),  # /console: static files for people, under a strict CSP
        ],
        dependencies=_dependencies(services, metrics, checks),
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=guard,
        request_class=ApiRequest,  # JSON numbers exact: an amount as sent
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=_openapi(),
        on_startup=starting,
        on_shutdown=closing,
        debug=False,
        logging_config=None,  # its default replaced the root's handler: see services.logs
    )
    guard.learn(app)  # what each route's query may hold, read once
    prepare_routes(app, partial(command_call, services=services))  # per request, once
    answer_every_method(app)  # each path's OPTIONS: every method of the path
    app.state.metrics = metrics
    app.state.services = services
    routes = [route.path for route in app.routes]
    app.asgi_handler = RequestObserver(app.asgi_handler, metrics, routes, api_headers)
    return app


def build_services(
    runtime: Runtime,
    metrics: Metrics,
    committer: Committer | None,
    principals: Principals | None,
    applied_position: AppliedPosition | None = None,
    *,
    current: CurrentState | None = None,
) -> Services:
    settings = runtime.settings
    if committer is None:
        committer = GroupCommitter(
            runtime.app,
            window_ms=settings.group_commit_window_ms,
            max_batch=settings.group_commit_max_batch,
            on_batch=metrics.batch,
        )
    access = runtime.access
    current = current or current_state_of(runtime)[0]
    access_store = open_access_store(runtime.pool, settings.data_dir)
    runtime.closers.append(access_store.close)
    return Services(
        app=runtime.app,
        commands=CommandService(
            runtime.app,
            committer,
            runtime.keyring,
            AggregateCache(max_bytes=settings.cache_mb * 2**20),
            access=access,
            loader=current.rebuilt,
            catch_up=current.caught_up,
            hold_keys=current.hold_keys,
        ),
        principals=principals
        or open_principals(runtime.pool, settings.data_dir, settings.departments),
        idempotency=open_idempotency(
            runtime.pool,
            settings.data_dir,
            secret=runtime.keyring.search_key(),
            lease_seconds=settings.idempotency_lease_seconds,
            retention_seconds=settings.idempotency_retention_seconds,
        ),
        access=access,
        positions=Positions(
            runtime.app.head_position, applied_position, settings.read_wait_seconds
        ),
        current=current,
        streams=StreamSlots(
            settings.streams_per_principal,
            settings.streams_max,
            states_bytes=settings.streams_cache_mb * 2**20,
        ),
        access_log=AccessLog(access_store, mode=settings.access_log),
    )


SWEEP_SECONDS = 1.0  # how often `Services.sweep` runs


async def _every(seconds: float, action: Callable[[], None]) -> None:
    """`action` every `seconds` until cancelled; one that fails is logged, and run again."""
    while True:
        await asyncio.sleep(seconds)
        try:
            action()
        except Exception:
            log.exception("background action failed; it runs again", action=repr(action))


def _in_background(
    run: Callable[[], Coroutine[Any, Any, None]],
) -> tuple[Callable[[], None], Callable[[], Awaitable[None]]]:
    """Start and stop functions running `run()` as a task on the app's event loop."""
    tasks: list[asyncio.Task[None]] = []

    def start() -> None:
        tasks.append(asyncio.get_running_loop().create_task(run()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()

    return start, stop


def _dependencies(
    services: Services, metrics: Metrics, checks: dict[str, ReadinessCheck]
) -> dict[str, Provide]:
    def provide_services() -> Services:
        return services

    def provide_metrics() -> Metrics:
        return metrics

    def provide_checks() -> dict[str, ReadinessCheck]:
        return checks

    inline = {"sync_to_thread": False}
    return {
        "services": Provide(provide_services, use_cache=True, **inline),
        "metrics_registry": Provide(provide_metrics, use_cache=True, **inline),
        "checks": Provide(provide_checks, use_cache=True, **inline),
        "caller": Provide(caller_dependency, **inline),
        "call": Provide(command_calls(services), **inline),
        "reader": Provide(readers(services), **inline),
        "lists": Provide(list_reader, **inline),
        "stream": Provide(event_stream, **inline),
    }


def _openapi() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="CRM Collab",
        version="1.0.0",
        path="/docs",
        render_plugins=[PinnedSwagger(path="/")],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
        ),
        security=[{"bearer": []}],
    )
