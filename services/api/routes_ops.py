"""Operations: liveness, readiness (event store, Kafka, projection lag), metrics, schema."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from services.api.observability import Metrics
from services.api.problem_table import problem_responses
from services.api.readiness import NOT_READY, ReadinessCheck

QUERY_PROBLEMS = problem_responses(400)
"""What an operations route may answer besides its own: a query it does not take."""


@get(
    "/healthz", sync_to_thread=False, include_in_schema=True, tags=["ops"], responses=QUERY_PROBLEMS
)
def healthz() -> dict[str, str]:
    """The process is up (nothing else is checked: restarts will not fix a database)."""
    return {"status": "ok"}


@get("/readyz", sync_to_thread=True, tags=["ops"], responses=QUERY_PROBLEMS)
def readyz(checks: NamedDependency[dict[str, ReadinessCheck]]) -> Response[dict[str, Any]]:
    """`ready` when every check passes, else `degraded`; 503 (not ready) only while the
    event store is unreachable, a projection holds dead letters or the follower is stalled
    (`services.api.readiness`)."""
    results = {name: check() for name, check in checks.items()}
    healthy = all(reason is None for reason in results.values())
    body = {
        "status": "ready" if healthy else "degraded",
        "checks": {name: reason or "ok" for name, reason in results.items()},
    }
    ready = not any(results.get(name) for name in NOT_READY)
    return Response(body, status_code=200 if ready else 503)


@get(
    "/metrics",
    sync_to_thread=True,
    tags=["ops"],
    media_type=MediaType.TEXT,
    responses=QUERY_PROBLEMS,
)
def metrics(metrics_registry: NamedDependency[Metrics]) -> Response[bytes]:
    """Prometheus' text format, rendered at most once a second (`Metrics.exposition`)."""
    return Response(metrics_registry.exposition(), media_type=CONTENT_TYPE_LATEST)


@get("/openapi.json", sync_to_thread=False, include_in_schema=False)
def openapi_json(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    return Response(request.app.openapi_schema.to_schema(), media_type=MediaType.JSON)


OPS = [healthz, readyz, metrics, openapi_json]
