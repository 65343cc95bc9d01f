"""Auditors' integrity evidence over HTTP: the signed checkpoints of the event log.

`GET /v1/audit/checkpoints` pages through them, oldest first (`?cursor=` is the last
position of the previous page). Each is exactly what was signed and published to
`crm.audit.checkpoints.v1`: an auditor who keeps these can later prove with
`crm audit verify --checkpoints FILE` that the log was neither truncated nor rewritten.
Access-model action `audit.read` (auditor, admin), on nothing in particular.
"""

from __future__ import annotations

from contextlib import closing
from typing import Annotated

import msgspec
from litestar import get
from litestar.params import QueryParameter

from domain.checkpoint import Checkpoint
from services.access import Forbidden, rule_name
from services.api.deps import CallerDep, ServicesDep
from services.api.errors import READ_PROBLEMS
from services.audit_log import END, open_audit_log

AUDIT_READ = "audit.read"


class CheckpointPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Checkpoint]
    next_cursor: str | None


@get("/audit/checkpoints", sync_to_thread=True, tags=["audit"], responses=READ_PROBLEMS)
def audit_checkpoints(
    *,
    services: ServicesDep,
    caller: CallerDep,
    cursor: Annotated[int, QueryParameter(ge=0, le=END, description="last position seen")] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> CheckpointPage:
    """Signed checkpoints (position, tree size, chain head, Merkle tree head, time,
    public key, Ed25519 signature), oldest first."""
    if not services.access.may(caller.principal, AUDIT_READ):
        raise Forbidden(rule_name(caller.principal, AUDIT_READ), "audit.read is for auditors")
    with closing(open_audit_log(services.app)) as log:
        items = log.checkpoints(after=cursor, limit=limit)
    more = len(items) == limit
    return CheckpointPage(items=items, next_cursor=str(items[-1].position) if more else None)


AUDIT = [audit_checkpoints]
