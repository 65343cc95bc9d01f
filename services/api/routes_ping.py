"""`GET /v1/ping`: an authenticated request that does nothing else.

It is the ceiling `make bench` measures every endpoint against: the same server, app,
middleware, token check and access-model decision (`session.ping`, granted to every
role) as any route, and no store. Clients may also use it to check a token.
"""

from __future__ import annotations

from litestar import get

from services.access.rules import PING
from services.api.deps import CallerDep, ServicesDep
from services.api.problem_table import problem_responses


@get("/ping", sync_to_thread=False, responses=problem_responses(400, 401, 403), tags=["ops"])
def ping(caller: CallerDep, services: ServicesDep) -> dict[str, str]:
    """Who the token belongs to; nothing is read or written."""
    principal = caller.principal
    services.access.require(principal, PING)
    return {"status": "ok", "principal": principal.name, "role": principal.role}
