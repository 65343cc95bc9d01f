"""Auditors' evidence over HTTP: the signed checkpoints of the event log, and the access
log of who read whose personal data.

`GET /v1/audit/checkpoints` pages through the checkpoints, oldest first (`?cursor=` is
the last position of the previous page). Each is exactly what was signed and published
to `crm.audit.checkpoints.v1`: an auditor who keeps these can later prove with
`crm audit verify --checkpoints FILE` that the log was neither truncated nor rewritten.
`GET /v1/audit/access?customer=&principal=&from=&to=` pages through the access records
(`services.access_log`) the same way. Access-model action `audit.read` (auditor, admin),
on nothing in particular.
"""

from __future__ import annotations

from contextlib import closing
from functools import partial
from typing import Annotated
from uuid import UUID

import anyio
import msgspec
from litestar import get
from litestar.params import FromQuery, QueryParameter

from domain.checkpoint import Checkpoint
from services.access.rules import Forbidden, Principal, rule_name
from services.access_log import StoredAccess, decode
from services.api.deps import CallerDep, Services, ServicesDep
from services.api.http_errors import ReadModelUnavailable
from services.api.problem_table import READ_PROBLEMS
from services.api.time_range import From, To, time_range
from services.audit_log import END, open_audit_log

AUDIT_READ = "audit.read"


class CheckpointPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Checkpoint]
    next_cursor: str | None


class AccessPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[StoredAccess]
    next_cursor: str | None


Cursor = Annotated[int, QueryParameter(ge=0, le=END, description="last position seen")]
Limit = Annotated[int, QueryParameter(ge=1, le=500)]


def _auditor(services: Services, principal: Principal) -> None:
    if not services.access.may(principal, AUDIT_READ):
        raise Forbidden(rule_name(principal, AUDIT_READ), "audit.read is for auditors")


@get("/audit/checkpoints", sync_to_thread=True, tags=["audit"], responses=READ_PROBLEMS)
def audit_checkpoints(
    *, services: ServicesDep, caller: CallerDep, cursor: Cursor = 0, limit: Limit = 100
) -> CheckpointPage:
    """Signed checkpoints (position, tree size, chain head, Merkle tree head, time,
    public key, Ed25519 signature), oldest first."""
    _auditor(services, caller.principal)
    with closing(open_audit_log(services.app)) as log:
        items = log.checkpoints(after=cursor, limit=limit)
    more = len(items) == limit
    return CheckpointPage(items=items, next_cursor=str(items[-1].position) if more else None)


@get("/audit/access", tags=["audit"], responses=READ_PROBLEMS)
async def audit_access(
    *,
    services: ServicesDep,
    caller: CallerDep,
    customer: FromQuery[UUID | None] = None,
    principal: FromQuery[str | None] = None,
    from_: From = None,
    to: To = None,
    cursor: Cursor = 0,
    limit: Limit = 100,
) -> AccessPage:
    """Who read whose personal data unmasked, oldest first: each record names the
    principal, the time, the route, the customers and the personal fields shown."""
    _auditor(services, caller.principal)
    if services.access_log is None:
        raise ReadModelUnavailable("no access log in this process")
    start, end = time_range(from_, to).in_calendar()
    rows = await anyio.to_thread.run_sync(
        partial(
            services.access_log.store.select,
            customer=customer, principal=principal, start=start, end=end,
            after=cursor, limit=limit,
        )
    )  # fmt: skip
    items = [decode(position, record) for position, record in rows]
    more = len(items) == limit
    return AccessPage(items=items, next_cursor=str(items[-1].position) if more else None)


AUDIT = [audit_checkpoints, audit_access]
