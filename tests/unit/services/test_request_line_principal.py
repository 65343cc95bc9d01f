"""The request's log line names its caller: `authenticate` leaves the principal's name
where `RequestObserver` reads it, the scope's state (the request guard runs it, inside
the observer)."""

from __future__ import annotations

from functools import partial
from typing import Any

from litestar import Litestar, get
from litestar.di import Provide
from litestar.testing import TestClient
from structlog.testing import capture_logs

from services.access.rules import Principal, Role
from services.api.deps import CallerDep, Services, authenticate, caller_dependency
from services.api.error_responses import EXCEPTION_HANDLERS
from services.api.observability import Metrics, RequestObserver
from services.api.request_guard import RequestGuard

ANN = Principal(name="ann", department="sales", role=Role.AGENT)


class Principals:
    async def resolve(self, token: str) -> Principal | None:
        return ANN if token == "ann-token" else None


@get("/whoami", sync_to_thread=False)
def whoami(caller: CallerDep) -> str:
    return caller.principal.name


def served() -> Litestar:
    services: Any = Services.__new__(Services)  # what `authenticate` uses of it alone
    services.principals = Principals()
    guard = RequestGuard(partial(authenticate, services=services))
    app = Litestar(
        [whoami],
        dependencies={
            "services": Provide(lambda: services, sync_to_thread=False),
            "caller": Provide(caller_dependency, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=guard,
    )
    guard.learn(app)
    app.asgi_handler = RequestObserver(app.asgi_handler, Metrics(lambda: 0.0), ["/whoami"])
    return app


def test_the_request_line_names_the_authenticated_principal() -> None:
    with capture_logs() as lines, TestClient(served()) as client:
        assert client.get("/whoami", headers={"Authorization": "Bearer ann-token"}).text == "ann"
        assert client.get("/whoami", headers={"Authorization": "Bearer other"}).status_code == 401
    requests = [line for line in lines if line["event"] == "request"]
    assert [(r["status"], r["principal"]) for r in requests] == [(200, "ann"), (401, None)]
