"""Where a permission is decided: the one role x action -> scope table (part of `services.access`).

`RULES` says, for each role, which actions it may take and over what scope (any resource,
its own department's, the ones its department owns, department-wide views); no entry is a
refusal, and admins may do everything. `allows` and `authorize` apply an entry to a
`Resource`; `rules_markdown` renders the table for the README and `crm access rules`.
In: a `Principal`, an action name, a `Resource`. Out: a bool, or `Forbidden` naming the
entry (`role:action:scope`). I/O: none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum

import msgspec

from services.access.resources import Resource


class Role(StrEnum):
    AGENT = "agent"
    MANAGER = "manager"
    ANALYST = "analyst"
    AUDITOR = "auditor"
    SERVICE = "service"
    ADMIN = "admin"


class Scope(StrEnum):
    ANY = "any"  # every resource
    OWN = "own"  # resources one of whose departments is the caller's (owner or shared)
    OWNER = "owner"  # resources whose owning (handling) department is the caller's
    OWN_DEPARTMENT = "own_department"  # department-wide views of the caller's department


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller; `name` becomes the `actor` of the events it causes."""

    name: str
    department: str
    role: Role


class Forbidden(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """The access model refused an action on something the caller may see; `rule` names
    the table entry (`role:action:scope`) or the field-level rule that refused it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


READ_ACTIONS = {
    "customer": "customer.read",
    "conversation": "conversation.read",
    "task": "task.read",
}
WRITE_CUSTOMER = ("customer.create", "customer.update", "customer.order")
WRITE_WORK = ("conversation.write", "task.write", "task.assign_self")
SURVEY = "conversation.survey"
"""Recording a customer's CSAT or NPS answer: the survey's integration (a service), never
staff, whose figures the answers make (an agent could credit made-up answers to
themselves or to any colleague a conversation names)."""
OWNER_ONLY = ("customer.owner", "customer.share", "customer.archive")
VIEWS = ("department.read", "events.read")
PING = "session.ping"  # any valid token: the ceiling route of `make bench` (GET /v1/ping)
DEPARTMENTS = "departments.list"  # any valid token: the configured departments' names
OWN, OWNER, ANY, DEPT = Scope.OWN, Scope.OWNER, Scope.ANY, Scope.OWN_DEPARTMENT


def _grant(actions: Iterable[str], scope: Scope) -> dict[str, Scope]:
    return dict.fromkeys(actions, scope)


_STAFF: Mapping[str, Scope] = {
    **_grant(WRITE_CUSTOMER, OWN),
    **_grant(OWNER_ONLY, OWNER),
    **_grant(WRITE_WORK, OWN),
    **_grant(READ_ACTIONS.values(), OWN),
    **_grant(VIEWS, DEPT),
    "task.evaluate": OWN,
    "timeline.read": OWN,
    PING: ANY,
    DEPARTMENTS: ANY,
}
_READ_ALL: Mapping[str, Scope] = {
    **_grant(READ_ACTIONS.values(), ANY),
    **_grant((*VIEWS, "timeline.read", "stats.read", PING, DEPARTMENTS), ANY),
}
RULES: Mapping[Role, Mapping[str, Scope]] = {
    Role.AGENT: _STAFF,
    Role.MANAGER: {**_STAFF, "task.assign": OWN, "history.read": OWN, "stats.read": DEPT},
    Role.ANALYST: _READ_ALL,
    Role.AUDITOR: {**_READ_ALL, "history.read": ANY, "as_of.read": ANY, "audit.read": ANY},
    Role.SERVICE: {
        **_READ_ALL,
        **_grant((*WRITE_CUSTOMER, *OWNER_ONLY, *WRITE_WORK, SURVEY), ANY),
        **_grant(("task.assign", "task.evaluate"), ANY),
    },
    Role.ADMIN: {},  # everything: see `scope_of`
}
"""Role x action -> scope; no entry: denied. Admins may do everything (`scope_of`)."""


def scope_of(principal: Principal, action: str) -> Scope | None:
    if principal.role is Role.ADMIN:
        return Scope.ANY
    return RULES[principal.role].get(action)


def rule_name(principal: Principal, action: str) -> str:
    return f"{principal.role}:{action}:{scope_of(principal, action) or 'denied'}"


def allows(principal: Principal, action: str, resource: Resource) -> bool:
    """Whether the rule for `action` covers `resource` (no exceptions, for filters)."""
    scope = scope_of(principal, action)
    if scope is Scope.ANY:
        return True
    if scope is Scope.OWN:
        return principal.department in resource.departments
    if scope is Scope.OWNER:
        return principal.department == resource.owner
    return False


def authorize(principal: Principal, action: str, resource: Resource) -> None:
    """Raise `Forbidden` unless the rule for `action` covers `resource`."""
    if not allows(principal, action, resource):
        raise Forbidden(rule_name(principal, action), f"{principal.role} may not {action} here")


ACTIONS = tuple(sorted({a for rules in RULES.values() for a in rules} | {"customer.erase"}))
"""Every action a rule may name (`customer.erase` is for admins only: no other entry)."""


def rules_table() -> Iterator[tuple[str, list[str]]]:
    """(action, scope per role in `Role` order) rows: the README's table, from `RULES`."""
    for action in ACTIONS:
        yield action, [str(scope_of(_ROLE_PROBES[role], action) or "-") for role in Role]


def rules_markdown() -> str:
    """The role x action table as Markdown (README, `crm access rules`)."""
    lines = ["| action | " + " | ".join(Role) + " |", "|---" * (len(Role) + 1) + "|"]
    lines += [f"| `{action}` | " + " | ".join(scopes) + " |" for action, scopes in rules_table()]
    return "\n".join(lines) + "\n"


_ROLE_PROBES = {role: Principal(name="probe", department="probe", role=role) for role in Role}
