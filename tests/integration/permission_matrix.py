"""The permission matrix as data: for every route, the access-model actions it needs
(each with the roles allowed it for principals of the resource's department, `sales`),
what a principal of another department gets, and how to call it on fresh resources.

Written independently of `services.access` (it is what the product must do, not a copy
of how it does it). `tests/integration/test_permissions.py` checks it against the app's
own routes, so a new route without an entry here fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROLES = {
    "agent": ("sam", "sales"),
    "manager": ("max", "sales"),
    "analyst": ("ann", "analytics"),
    "auditor": ("aud", "audit"),
    "service": ("svc", "integration"),
    "admin": ("root", "it"),
}
WRITERS = "agent manager service admin"
READERS = "agent manager analyst auditor service admin"
PUBLIC = ""


@dataclass(frozen=True)
class Ids:
    customer: str
    conversation: str
    task: str
    message: str


Call = Callable[[Ids, str], tuple[str, str, dict[str, Any] | None]]  # (ids, caller name)


@dataclass(frozen=True)
class Case:
    actions: tuple[tuple[str, str], ...]  # (action, roles allowed), checked in order
    call: Call
    outsider: int  # what a support agent gets on sales' resources
    stream: bool = False

    @property
    def public(self) -> bool:
        return not self.actions

    def refusal(self, role: str) -> str | None:
        """The rule refusing `role` (the first action it lacks), or None when allowed."""
        for action, allowed in self.actions:
            if role not in allowed.split():
                return f"{role}:{action}:denied"
        return None


HIDDEN = 404  # an aggregate another department may not read does not exist for it


def _case(
    action: str, allowed: str, method: str, url: str, body: Any = None, **options: Any
) -> Case:
    actions = tuple(options.pop("also", ()))
    outsider = options.pop("outsider", HIDDEN)

    def call(ids: Ids, me: str) -> tuple[str, str, dict[str, Any] | None]:
        values = vars(ids) | {"me": me}
        filled = None if body is None else {k: _fill(v, values) for k, v in body.items()}
        return method, url.format(**values), filled

    return Case(((action, allowed), *actions) if action else (), call, outsider, **options)


def _fill(value: Any, ids: dict[str, str]) -> Any:
    return value.format(**ids) if isinstance(value, str) else value


C, V, T = "/v1/customers/{customer}", "/v1/conversations/{conversation}", "/v1/tasks/{task}"
CID, VID, TID = "{customer_id:uuid}", "{conversation_id:uuid}", "{task_id:uuid}"
CUS, CON, TSK = f"/v1/customers/{CID}", f"/v1/conversations/{VID}", f"/v1/tasks/{TID}"
NEW_CUSTOMER = {"name": "N", "owner_department": "sales"}
ORDER = {"order_id": "o-9", "amount": "10.00", "currency": "EUR"}
MESSAGE = {"direction": "outbound", "author": "sam", "content": "Hi"}
OPS = ("/healthz", "/readyz", "/metrics", "/openapi.json")
DOCS = ("/docs", "/docs/{path:str}", "/docs/openapi.json", "/docs/oauth2-redirect.html")
CONSOLE = {  # the console's static files (services/console): route -> a file it serves
    ("GET", "/console"): "/console",
    ("GET", "/console/{file_path:path}"): "/console/js/main.js",
    ("HEAD", "/console/{file_path:path}"): "/console/js/main.js",
}

MATRIX: dict[tuple[str, str], list[Case]] = {
    ("GET", "/v1/customers"): [  # search: another department's customers are not found
        _case("customer.read", READERS, "GET", "/v1/customers?tag=gold", outsider=200)
    ],
    ("POST", "/v1/customers"): [
        _case("customer.create", WRITERS, "POST", "/v1/customers", NEW_CUSTOMER, outsider=403)
    ],
    ("GET", CUS): [
        _case("customer.read", READERS, "GET", C),
        _case("as_of.read", "auditor admin", "GET", C + "?as_of=2030-01-01T00:00:00Z"),
    ],
    ("PATCH", CUS): [_case("customer.update", WRITERS, "PATCH", C, {"company": "X"})],
    ("DELETE", CUS): [_case("customer.archive", WRITERS, "DELETE", C)],
    ("PUT", CUS + "/owner"): [
        _case("customer.owner", WRITERS, "PUT", C + "/owner", {"department": "support"})
    ],
    ("POST", CUS + "/shares"): [
        _case("customer.share", WRITERS, "POST", C + "/shares", {"department": "support"})
    ],
    ("DELETE", CUS + "/shares/{department:str}"): [
        _case("customer.share", WRITERS, "DELETE", C + "/shares/support")
    ],
    ("POST", CUS + "/tags"): [
        _case("customer.update", WRITERS, "POST", C + "/tags", {"tag": "vip"})
    ],
    ("DELETE", CUS + "/tags/{tag_name:str}"): [
        _case("customer.update", WRITERS, "DELETE", C + "/tags/gold")
    ],
    ("PUT", CUS + "/consents"): [
        _case("customer.update", WRITERS, "PUT", C + "/consents", {"consents": {"sms": True}})
    ],
    ("POST", CUS + "/orders"): [_case("customer.order", WRITERS, "POST", C + "/orders", ORDER)],
    ("PATCH", CUS + "/orders/{order_id:str}"): [
        _case("customer.order", WRITERS, "PATCH", C + "/orders/o-1", {"status": "shipped"})
    ],
    ("POST", CUS + "/erasure"): [
        _case("customer.erase", "admin", "POST", C + "/erasure", {}, outsider=403)
    ],
    ("GET", CUS + "/timeline"): [_case("timeline.read", READERS, "GET", C + "/timeline")],
    ("GET", CUS + "/history"): [
        _case("history.read", "manager auditor admin", "GET", C + "/history")
    ],
    ("POST", "/v1/conversations"): [
        _case(
            "conversation.write",
            WRITERS,
            "POST",
            "/v1/conversations",
            {"customer_id": "{customer}", "channel": "phone", "subject": "S"},
        )
    ],
    ("GET", CON): [_case("conversation.read", READERS, "GET", V)],
    ("GET", CON + "/messages"): [_case("conversation.read", READERS, "GET", V + "/messages")],
    ("POST", CON + "/messages"): [
        _case("conversation.write", WRITERS, "POST", V + "/messages", MESSAGE)
    ],
    ("POST", CON + "/notes"): [
        _case("conversation.write", WRITERS, "POST", V + "/notes", {"content": "n"})
    ],
    ("PATCH", CON + "/messages/{message_id:str}"): [
        _case(
            "conversation.write",
            WRITERS,
            "PATCH",
            V + "/messages/{message}",
            {"content": "c", "reason": "typo"},
        )
    ],
    ("DELETE", CON + "/messages/{message_id:str}"): [
        _case("conversation.write", WRITERS, "DELETE", V + "/messages/{message}?reason=wrong")
    ],
    ("POST", CON + "/handoffs"): [
        _case("conversation.write", WRITERS, "POST", V + "/handoffs", {"to_department": "support"})
    ],
    ("POST", CON + "/close"): [
        _case("conversation.write", WRITERS, "POST", V + "/close", {"outcome": "resolved"})
    ],
    ("POST", CON + "/reopen"): [
        _case("conversation.write", WRITERS, "POST", V + "/reopen", {"reason": "again"})
    ],
    ("POST", CON + "/csat"): [
        _case(
            "conversation.survey", "service admin", "POST", V + "/csat", {"score": 5}, outsider=403
        )
    ],
    ("POST", CON + "/nps"): [
        _case(
            "conversation.survey", "service admin", "POST", V + "/nps", {"score": 9}, outsider=403
        )
    ],
    ("GET", CON + "/history"): [
        _case("history.read", "manager auditor admin", "GET", V + "/history")
    ],
    ("POST", "/v1/tasks"): [
        _case(
            "task.write", WRITERS, "POST", "/v1/tasks", {"customer_id": "{customer}", "title": "T"}
        ),
        _case(
            "task.write",
            WRITERS,
            "POST",
            "/v1/tasks",
            {"customer_id": "{customer}", "title": "T", "assignee": "zoe"},
            also=[("task.assign", "manager service admin")],
            outsider=403,  # agents may never assign others: refused whatever the target
        ),
    ],
    ("GET", TSK): [_case("task.read", READERS, "GET", T)],
    ("PATCH", TSK): [_case("task.write", WRITERS, "PATCH", T, {"priority": "high"})],
    ("POST", TSK + "/assignment"): [
        _case(
            "task.write",
            WRITERS,
            "POST",
            T + "/assignment",
            {"assignee": "zoe"},
            also=[("task.assign", "manager service admin")],
            outsider=403,
        ),
        _case(
            "task.write",
            WRITERS,
            "POST",
            T + "/assignment",
            {"assignee": "{me}"},
            also=[("task.assign_self", WRITERS)],
        ),
    ],
    ("POST", TSK + "/start"): [_case("task.write", WRITERS, "POST", T + "/start")],
    ("POST", TSK + "/progress"): [
        _case("task.write", WRITERS, "POST", T + "/progress", {"note": "n", "percent": 10})
    ],
    ("POST", TSK + "/complete"): [
        _case("task.write", WRITERS, "POST", T + "/complete", {"resolution": "r"})
    ],
    ("POST", TSK + "/evaluation"): [
        _case("task.evaluate", WRITERS, "POST", T + "/evaluation", {"score": 4})
    ],
    ("POST", TSK + "/reopen"): [
        _case("task.write", WRITERS, "POST", T + "/reopen", {"reason": "again"})
    ],
    ("POST", TSK + "/cancel"): [
        _case("task.write", WRITERS, "POST", T + "/cancel", {"reason": "no"})
    ],
    ("GET", TSK + "/history"): [
        _case("history.read", "manager auditor admin", "GET", T + "/history")
    ],
    ("GET", "/v1/departments/{department:str}/{view:str}"): [
        _case("department.read", READERS, "GET", f"/v1/departments/sales/{view}", outsider=403)
        for view in ("customers", "conversations", "tasks")
    ],
    ("GET", "/v1/stats/satisfaction"): [
        _case(
            "stats.read",
            "manager analyst auditor service admin",
            "GET",
            "/v1/stats/satisfaction?department=sales",
            outsider=403,
        )
    ],
    ("GET", "/v1/stats/tasks"): [
        _case(
            "stats.read",
            "manager analyst auditor service admin",
            "GET",
            "/v1/stats/tasks?department=sales",
            outsider=403,
        )
    ],
    ("GET", "/v1/audit/checkpoints"): [
        _case("audit.read", "auditor admin", "GET", "/v1/audit/checkpoints", outsider=403)
    ],
    ("GET", "/v1/audit/access"): [
        _case(
            "audit.read",
            "auditor admin",
            "GET",
            "/v1/audit/access?customer={customer}",
            outsider=403,
        )
    ],
    ("GET", "/v1/events/stream"): [
        _case("events.read", READERS, "GET", "/v1/events/stream", outsider=200, stream=True),
        _case(
            "events.read",
            READERS,
            "GET",
            "/v1/events/stream?after=0",
            also=[("history.read", "manager auditor admin")],
            outsider=403,
            stream=True,
        ),
    ],
    ("GET", "/v1/ping"): [_case("session.ping", READERS, "GET", "/v1/ping", outsider=200)],
    ("GET", "/v1/departments"): [
        _case("departments.list", READERS, "GET", "/v1/departments", outsider=200)
    ],
    **{
        ("GET", path): [_case(PUBLIC, READERS, "GET", path, outsider=200)]
        for path in (*OPS, *(f"/v1{p}" for p in OPS))
    },
    **{
        ("GET", path): [
            _case(
                PUBLIC,
                READERS,
                "GET",
                path.replace("{path:str}", "index.html"),
                outsider=404 if "{path:str}" in path else 200,  # public; no such page
            )
        ]
        for path in DOCS
    },
    **{
        route: [_case(PUBLIC, READERS, route[0], url, outsider=200)]
        for route, url in CONSOLE.items()
    },
}
