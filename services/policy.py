"""Who may do what: THE one permission table (role x action -> rule) and field masking.

Every permission decision in the API and the event stream goes through `authorize`,
and every document leaving the system (HTTP response or streamed event) through
`mask`, so a reviewer can read the whole policy in this file.

Scopes of a rule:
* `any`: every resource;
* `own`: resources one of whose departments (owner or shared-with for a customer, the
  handling department for a conversation or task) is the principal's department;
* `own_department`: department-wide views, only of the principal's own department;
* no entry: denied.
I/O: none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

import msgspec


class Role(StrEnum):
    AGENT = "agent"
    MANAGER = "manager"
    ANALYST = "analyst"
    AUDITOR = "auditor"
    SERVICE = "service"
    ADMIN = "admin"


class Scope(StrEnum):
    ANY = "any"
    OWN = "own"
    OWN_DEPARTMENT = "own_department"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller; `name` becomes the `actor` of the events it causes."""

    name: str
    department: str
    role: Role


class Forbidden(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """The policy refused an action; `rule` names the table entry (or its absence)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


# Actions, grouped by what they touch. Writes on conversations/tasks are one action
# each except those with their own rule (assignment, evaluation, surveys).
WRITE_CUSTOMER = ("customer.create", "customer.update", "customer.share", "customer.order")
WRITE_WORK = (
    "conversation.write",
    "conversation.survey",
    "task.write",
    "task.assign_self",
    "task.evaluate",
)
READS = ("customer.read", "conversation.read", "task.read")
OWN, ANY, DEPT = Scope.OWN, Scope.ANY, Scope.OWN_DEPARTMENT


def _grant(actions: Iterable[str], scope: Scope) -> dict[str, Scope]:
    return dict.fromkeys(actions, scope)


RULES: Mapping[Role, Mapping[str, Scope]] = {
    Role.AGENT: {
        **_grant(WRITE_CUSTOMER, OWN),
        **_grant(WRITE_WORK, OWN),
        **_grant(READS, OWN),
        "customer.archive": OWN,
        "department.read": DEPT,
        "timeline.read": OWN,
        "events.read": DEPT,
    },
    Role.MANAGER: {
        **_grant(WRITE_CUSTOMER, OWN),
        **_grant(WRITE_WORK, OWN),
        **_grant(READS, OWN),
        "customer.archive": OWN,
        "task.assign": OWN,
        "department.read": DEPT,
        "timeline.read": OWN,
        "history.read": OWN,
        "stats.read": DEPT,
        "events.read": DEPT,
    },
    Role.ANALYST: {
        **_grant(READS, ANY),
        "department.read": ANY,
        "timeline.read": ANY,
        "stats.read": ANY,
        "events.read": ANY,
    },
    Role.AUDITOR: {
        **_grant(READS, ANY),
        "department.read": ANY,
        "timeline.read": ANY,
        "history.read": ANY,
        "as_of.read": ANY,
        "stats.read": ANY,
        "events.read": ANY,
        "audit.read": ANY,
    },
    Role.SERVICE: {
        **_grant(WRITE_CUSTOMER, ANY),
        **_grant(WRITE_WORK, ANY),
        **_grant(READS, ANY),
        "customer.archive": ANY,
        "task.assign": ANY,
        "department.read": ANY,
        "timeline.read": ANY,
        "stats.read": ANY,
        "events.read": ANY,
    },
    Role.ADMIN: {},  # everything: see `scope_of`
}


def scope_of(principal: Principal, action: str) -> Scope | None:
    """The rule for `action`, or None when the role has none (denied)."""
    if principal.role is Role.ADMIN:
        return Scope.ANY
    return RULES[principal.role].get(action)


def rule_name(principal: Principal, action: str) -> str:
    scope = scope_of(principal, action)
    return f"{principal.role}:{action}:{scope or 'denied'}"


def authorize(principal: Principal, action: str, departments: Iterable[str] = ()) -> None:
    """Raise `Forbidden` unless `principal` may do `action` on a resource that belongs to
    `departments` (empty for actions on nothing yet: creations check their target)."""
    scope = scope_of(principal, action)
    rule = rule_name(principal, action)
    if scope is None:
        raise Forbidden(rule, f"role {principal.role} may not {action}")
    if scope is Scope.ANY:
        return
    if principal.department not in set(departments):
        raise Forbidden(rule, f"{action} is limited to department {principal.department}")


# --- masking --------------------------------------------------------------------------

MASKED = "[masked]"
CONTACT_FIELDS = frozenset({"email", "phone", "address"})
CONTENT_FIELDS = frozenset({"content", "note", "summary", "comment", "feedback", "resolution"})
HIDDEN_BY_ROLE: Mapping[Role, frozenset[str]] = {
    Role.ANALYST: CONTACT_FIELDS | CONTENT_FIELDS,
}
MARKETING = "marketing"
EMAIL_CONSENT = "email_marketing"


def hidden_fields(principal: Principal, *, email_consent: bool = False) -> frozenset[str]:
    """Fields this principal may not read: by role, plus email for marketing staff
    unless the customer consented to email marketing."""
    hidden = HIDDEN_BY_ROLE.get(principal.role, frozenset())
    if principal.department == MARKETING and principal.role in (Role.AGENT, Role.MANAGER):
        hidden = hidden if email_consent else hidden | {"email"}
    return hidden


def mask(principal: Principal, document: Any, *, email_consent: bool = False) -> Any:
    """`document` (builtins: dicts, lists, scalars) with hidden fields replaced by MASKED,
    at any depth. The one place masking happens for HTTP responses and the stream."""
    hidden = hidden_fields(principal, email_consent=email_consent)
    return _mask(document, hidden) if hidden else document


def _mask(value: Any, hidden: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (MASKED if k in hidden and v is not None else _mask(v, hidden))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(item, hidden) for item in value]
    return value
