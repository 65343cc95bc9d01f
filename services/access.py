"""The one access model: who may read what, which personal fields they see, which commands run.

Every read path (a `GET`, history, `as_of`, timeline entries, department views, statistics,
search, the event stream) and every command asks this module; nothing else decides
visibility or permission. A decision is a pure function of a principal and a `Resource`:
what the model needs of an aggregate's state at some position (its departments, its owner,
the customer's e-mail consent, erasure).

* **Visibility.** A resource the caller may not read does not exist for them: `NotFound`
  (404), exactly as for an unknown id, so ids of other departments cannot be probed.
  `Forbidden` (403, naming the rule) is for a resource they may read but may not act on in
  that way.
* **Rules.** `RULES` is the one table of role x action -> scope (`rules_table()` renders it
  for the README). Field-level rules live here too: a command naming an assignee is an
  assignment; a command never widens what its own caller may see; departments are a
  closed, configured set.
* **Fields.** Which fields are personal is declared once, in the domain (`personal_fields`
  of aggregates, their state structs and events; read-model tables repeat it for their
  columns). `FieldAccess` says which of them a caller may not read; `mask` applies it.

I/O: none.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

import msgspec

from domain.base import MASKED, Aggregate, NotFound, ValidationFailed
from domain.conversation import Conversation
from domain.customer import Customer, CustomerErasedError
from domain.task import Task
from domain.validation import same_person

DEFAULT_DEPARTMENTS = ("sales", "support", "marketing")
MARKETING = "marketing"
EMAIL_CONSENT = "email_marketing"


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


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """What access decisions need of an aggregate (or a read-model row) at a position."""

    kind: str  # "customer" | "conversation" | "task"
    id: UUID
    owner: str  # the owning department (a conversation's or task's handling department)
    departments: frozenset[str]  # every department that sees it (owner plus shared-with)
    email_consent: bool = False
    erased: bool = False


def resource_of(aggregate: Aggregate, *, erased: bool = False) -> Resource:
    """The resource an aggregate's current state describes; `erased`: its customer's
    erasure, for conversations and tasks (their own state does not know it)."""
    if isinstance(aggregate, Customer):
        return Resource(
            kind="customer",
            id=aggregate.id,
            owner=aggregate.owner_department,
            departments=aggregate.departments,
            email_consent=aggregate.consents.get(EMAIL_CONSENT, False),
            erased=aggregate.erased,
        )
    if isinstance(aggregate, Conversation | Task):
        department = aggregate.department
        return Resource(
            kind=aggregate.aggregate_type,
            id=aggregate.id,
            owner=department,
            departments=frozenset((department,)),
            erased=erased,
        )
    raise TypeError(f"no access rules for {type(aggregate).__name__}")


# --- the rules ----------------------------------------------------------------------

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


# --- personal fields -----------------------------------------------------------------


class FieldAccess(msgspec.Struct, frozen=True):
    """Which personal fields a caller may not read: all of them, or those named (by the
    last part of their path, e.g. `email`)."""

    everything: bool = False
    hidden: frozenset[str] = frozenset()

    def hides(self, path: str) -> bool:
        return self.everything or path.rpartition(".")[2] in self.hidden

    def covers(self, other: FieldAccess) -> bool:
        """True when this hides at least what `other` hides."""
        return self.everything or (not other.everything and other.hidden <= self.hidden)

    def __or__(self, other: FieldAccess) -> FieldAccess:
        """What hides what either hides (one of the two when it covers the other)."""
        if self.covers(other):
            return self
        if other.covers(self):
            return other
        return FieldAccess(hidden=self.hidden | other.hidden)


EVERYTHING_VISIBLE = FieldAccess()


MARKETING_NEVER = frozenset({"phone", "address"})
"""A customer's fields marketing staff never read: their department's read model holds
none of them (`projections.marketing`), and no consent the product records covers them."""
_MARKETING = {
    True: FieldAccess(hidden=MARKETING_NEVER),
    False: FieldAccess(hidden=MARKETING_NEVER | {"email"}),
}
MARKETING_AUTHORS = FieldAccess(hidden=frozenset({"author"}))
"""What marketing staff never read of a conversation's entries, wherever they are shown (a
conversation, its messages, timeline rows, events), whatever the consent: their `author`.
An inbound message's author is the customer as written, free text (a name, an e-mail
address, a phone number), and nothing says which it is, so no consent can cover it, and
a phone number is never theirs to read. Outbound authors and notes' (staff names) are
hidden alike: one rule by field, not by direction; an event's `actor` still names who
acted. It does not follow state (`fields_follow_state`): it holds for every conversation
(and task, which holds no author) at every position alike."""


def field_access(principal: Principal, resource: Resource) -> FieldAccess:
    """Analysts read no personal data at all; marketing staff read no customer's phone
    or address, their e-mail only while the customer consents to e-mail marketing, and
    no author of a conversation's entries (`MARKETING_AUTHORS`); everyone else reads
    all."""
    if principal.role is Role.ANALYST:
        return FieldAccess(everything=True)
    if _marketing_staff(principal):
        if resource.kind == "customer":
            return _MARKETING[resource.email_consent]
        return MARKETING_AUTHORS
    return EVERYTHING_VISIBLE


def _marketing_staff(principal: Principal) -> bool:
    staff = principal.role in (Role.AGENT, Role.MANAGER)
    return staff and principal.department == MARKETING


def _consent_decides(principal: Principal, kind: str) -> bool:
    """Whether the customer's e-mail consent decides what the caller reads of `kind`."""
    return kind == "customer" and _marketing_staff(principal)


@functools.lru_cache(maxsize=1024)
def unmasked(personal: tuple[str, ...], access: FieldAccess) -> tuple[str, ...]:
    """The paths of `personal` that `access` does not mask (a class's paths meet a few
    kinds of access: worked out once each, not at every read)."""
    return tuple(path for path in personal if not access.hides(path))


def mask(
    document: dict[str, Any],
    personal: Iterable[str],
    access: FieldAccess,
    opener: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """`document` (builtins) with each hidden personal path's value replaced by MASKED
    (`None` stays `None`), and with `opener` each other one opened (a sealed document:
    only what the caller may see is ever opened); a `*` step means every item of a list
    or dict. In place."""
    if access is EVERYTHING_VISIBLE and opener is None:
        return document
    for path in personal:
        if access.hides(path):
            _map_path(document, path.split("."), _masked)
        elif opener is not None:
            _map_path(document, path.split("."), opener)
    return document


def _masked(value: str) -> str:
    return MASKED


def _map_path(value: Any, steps: list[str], func: Callable[[str], str]) -> None:
    """`func` applied to the strings at the end of the path `steps` (in place)."""
    step, rest = steps[0], steps[1:]
    if step == "*":
        items = value.values() if isinstance(value, dict) else value
        for item in items if isinstance(items, Iterable) else ():
            _map_path(item, rest, func)
    elif isinstance(value, dict) and step in value:
        if rest:
            _map_path(value[step], rest, func)
        elif value[step] is not None:  # personal fields are text (or None)
            value[step] = func(value[step])


# --- the model -----------------------------------------------------------------------


class Findable(msgspec.Struct, frozen=True, kw_only=True):
    """The customers a search may find (`AccessModel.findable`)."""

    department: str | None  # only this department's (None: every department's)
    consenting: bool  # only those consenting to e-mail marketing


def _customer_department(principal: Principal) -> str | None:
    """The department whose customers a caller may read (None: every department's):
    lets a customer search keep only those rows, so pages stay full."""
    scope = scope_of(principal, READ_ACTIONS["customer"])
    return None if scope is Scope.ANY else principal.department


@functools.lru_cache(maxsize=1024)
def _findable(principal: Principal, searched: tuple[str, ...]) -> Findable | None:
    """`AccessModel.findable`, worked out once per principal and fields searched."""
    if not _finds(principal, searched, consenting=True):
        return None
    return Findable(
        department=_customer_department(principal),
        consenting=not _finds(principal, searched, consenting=False),
    )


def _finds(principal: Principal, searched: tuple[str, ...], *, consenting: bool) -> bool:
    """Whether the caller reads every field of `searched` of a customer they may read
    that consents to e-mail marketing, or does not."""
    fields = field_access(principal, _CUSTOMERS[consenting])
    return not any(fields.hides(name) for name in searched)


_CUSTOMERS = {
    consenting: Resource(
        kind="customer", id=UUID(int=0), owner="", departments=frozenset(), email_consent=consenting
    )
    for consenting in (False, True)
}
"""A customer consenting to e-mail marketing and one not, as field access sees them
(what it reads of a customer: its kind and that consent)."""


class CommandRules(msgspec.Struct, frozen=True, kw_only=True):
    """What a command tells the access model about itself (see `services.command_base`)."""

    action: str
    assignee: str | None = None  # a command naming an assignee is an assignment
    departments: Mapping[str, str] = msgspec.field(default_factory=dict)  # field -> value


class AccessModel:
    """The decisions, with the configured departments (`CRM_DEPARTMENTS`)."""

    ASSIGN_SELF: ClassVar[str] = "task.assign_self"
    ASSIGN: ClassVar[str] = "task.assign"

    def __init__(self, departments: Iterable[str] = DEFAULT_DEPARTMENTS) -> None:
        self.names = tuple(dict.fromkeys(departments))  # as configured, for pickers
        self.departments = frozenset(self.names)

    # --- reads ------------------------------------------------------------------------

    def readable(self, principal: Principal, resource: Resource) -> bool:
        return allows(principal, READ_ACTIONS[resource.kind], resource)

    def read(self, principal: Principal, resource: Resource, action: str = "") -> FieldAccess:
        """The caller's field access to `resource`, after `NotFound` unless they may read
        it and `Forbidden` unless they may also do `action` (history, as_of, timeline)."""
        if not self.readable(principal, resource):
            raise NotFound(resource.kind, resource.id)
        if action:
            authorize(principal, action, resource)
        return field_access(principal, resource)

    def fields(self, principal: Principal, resource: Resource) -> FieldAccess:
        """Which personal fields of a readable resource the caller may not read."""
        return field_access(principal, resource)

    def listed(
        self,
        principal: Principal,
        resource: Resource,
        searched: Iterable[str] = (),
        now: Resource | None = None,
    ) -> FieldAccess | None:
        """The caller's field access to a row of a list (None: left out), found by the
        personal fields `searched` (a search's): a row they may read, and each of those
        fields of it. Finding a customer by a value tells the value, so a field masked
        for the caller finds nothing (an analyst's search by e-mail, or a marketing
        agent's for a customer not consenting to e-mail marketing). `now`: the state
        now of an aggregate whose row is older (its read model has not applied all its
        events): the row is then a past state, judged as `past_event` judges one, so a
        change the read model lags behind (a consent withdrawn, a customer unshared, a
        conversation handed off) leaves it out or masks it at once, as a `GET` does. A
        customer erased now is found by none of their personal values: the search terms
        go once the read model applies the erasure, and the answer would confirm them."""
        fields = self.past_event(principal, resource, None if now is None else lambda: now)
        if fields is None or (searched and now is not None and now.erased):
            return None
        return None if any(fields.hides(name) for name in searched) else fields

    def listed_depends_on_state(
        self, principal: Principal, kinds: Iterable[str], searched: Iterable[str] = ()
    ) -> bool:
        """Whether a list's row of one of `kinds`, found by the personal fields `searched`,
        can show the caller more than its aggregate's state now does (so `listed` must be
        given the state now of one whose read model lags): their view follows state
        (`past_depends_on_state`), or a personal value found it, which an erasure since
        takes back."""
        return bool(tuple(searched)) or any(
            self.past_depends_on_state(principal, kind) for kind in kinds
        )

    # --- the past: history, as_of and the event stream --------------------------------
    #
    # What an event (or a past state) shows is judged by the state it left *and* by the
    # state now: a consent withdrawn since hides the e-mails it once showed, and one given
    # since does not show those stored without it; a replayed event of an aggregate the
    # caller may no longer read is left out, as a `GET` of it is a 404.

    def past_fields(self, principal: Principal, then: Resource, now: Resource) -> FieldAccess:
        """The caller's field access to a past state `then` of what is `now`: each field
        hidden in either."""
        return field_access(principal, then) | field_access(principal, now)

    def fields_follow_state(self, principal: Principal, kind: str) -> bool:
        """Whether the caller's field access to a `kind` can change with its state (so a
        path showing the past must know the state each event left)."""
        return _consent_decides(principal, kind)

    def past_depends_on_state(self, principal: Principal, kind: str) -> bool:
        """Whether the caller's view of a past event of a `kind` can depend on the state
        it left (`past_event`): their reads are scoped, or their fields follow state."""
        scoped = scope_of(principal, READ_ACTIONS[kind]) is not Scope.ANY
        return scoped or self.fields_follow_state(principal, kind)

    def past_event(
        self, principal: Principal, then: Resource, now: Callable[[], Resource] | None = None
    ) -> FieldAccess | None:
        """The caller's field access to a past event (None: left out), `then` the state it
        left: readable as of the event and now (`now()`, asked only when it could change
        the answer; None: a live event, whose state now is the one it left), each field
        hidden then or now. The one rule of the stream's replay and of `history`: what
        a customer was before it was shared with the caller's department, a conversation
        before it was handed to it, stays out."""
        if not self.readable(principal, then):
            return None
        if now is None or not self.past_depends_on_state(principal, then.kind):
            return field_access(principal, then)
        current = now()
        return (
            self.past_fields(principal, then, current)
            if self.readable(principal, current)
            else None
        )

    def entry_department(self, principal: Principal) -> str | None:
        """The department whose conversations and tasks a caller may read (None: every
        department's): lets a list query keep only those rows, so pages stay full."""
        scopes = {scope_of(principal, READ_ACTIONS[kind]) for kind in ("conversation", "task")}
        return None if scopes == {Scope.ANY} else principal.department

    def findable(self, principal: Principal, searched: Iterable[str]) -> Findable | None:
        """Which customers a search by the personal fields `searched` may find for the
        caller, for its query to keep only those (None: none, so nothing is searched).
        A row `listed` leaves out must never reach the query's page: a page's cursor is
        its last row's id, so a page of rows left out would still name a customer
        having the searched value (an analyst's search by name, a marketing agent's by
        the e-mail of a customer not consenting). Rows the query keeps that `listed`
        leaves out (its read model lagging: a customer erased, unshared since) never
        name one either: a page and its cursor are made of the rows kept alone
        (`services.api.read_models.Assembly`)."""
        return _findable(principal, tuple(searched))

    def department_scope(
        self, principal: Principal, action: str, department: str | None
    ) -> str | None:
        """The department a department-wide read (view, statistics, stream) covers: the
        asked one (404 if not configured, 403 if another department's and the caller's rule
        is their own department's), the caller's own when none is asked and their rule is
        department-scoped, else None (all departments)."""
        scope = scope_of(principal, action)
        if department is None and scope is Scope.OWN_DEPARTMENT:
            department = principal.department
        if department is not None and department not in self.departments:
            raise NotFound("department", department[:40])
        if scope is Scope.ANY or (scope is not None and department == principal.department):
            return department
        raise Forbidden(
            rule_name(principal, action), f"{action} is limited to {principal.department}"
        )

    def require(self, principal: Principal, action: str) -> None:
        """Raise `Forbidden` unless the caller's role has a rule for `action` (actions on
        no resource, such as `session.ping`)."""
        if scope_of(principal, action) is None:
            raise Forbidden(rule_name(principal, action), f"{principal.role} may not {action}")

    def may(self, principal: Principal, action: str) -> bool:
        """Whether the caller's role has any rule for `action` (history replays...)."""
        return scope_of(principal, action) is not None

    # --- commands ---------------------------------------------------------------------

    def command(self, principal: Principal, rules: CommandRules, target: Resource | None) -> None:
        """Before deciding: what refuses it whatever its target (`before_target`: 403,
        422), the target readable (404), the rules on it (403), its customer not erased
        (409). `target` is None for a new customer."""
        actions = self.before_target(principal, rules)
        if target is not None:
            self.on_target(principal, actions, target)

    def on_target(self, principal: Principal, actions: Iterable[str], target: Resource) -> None:
        """`command`'s checks of its target, for a command whose `before_target` passed
        and gave `actions` (a command deciding again on a fresh load asks it once)."""
        if not self.readable(principal, target):
            raise NotFound(target.kind, target.id)
        for action in actions:
            authorize(principal, action, target)
        if target.erased:
            raise CustomerErasedError(f"the customer of {target.kind} {target.id} was erased")

    def finishing_erasure(
        self, principal: Principal, rules: CommandRules, target: Resource
    ) -> None:
        """Before finishing an erasure stored earlier whose key outlived it
        (`services.erasure_command`): `command`'s checks but the customer's erasure,
        which is what it finishes (404, 403 as for erasing a customer not erased)."""
        self.command(principal, rules, msgspec.structs.replace(target, erased=False))

    def before_target(self, principal: Principal, rules: CommandRules) -> list[str]:
        """What refuses a command whatever its target: an action the caller's role has no
        rule for (403), a department not configured (422). Asked before the target is
        even looked up (`services.commands`), so that such a refusal answers alike for an
        id the caller may not read and one that does not exist: found first, only ids that
        exist would get the 403 or 422, and the others a 404. The command's actions."""
        actions = self._actions(principal, rules)
        for action in actions:
            if scope_of(principal, action) is None:
                raise Forbidden(rule_name(principal, action), f"{principal.role} may not {action}")
        self._check_departments(rules)
        return actions

    def created(self, principal: Principal, rules: CommandRules, new: Resource) -> None:
        """After deciding a creation: acting in the new resource's department needs the rule
        there too (an agent creates in their own department, then hands off)."""
        for action in self._actions(principal, rules):
            authorize(principal, action, new)

    def changed(
        self, principal: Principal, rules: CommandRules, before: Resource, after: Resource
    ) -> None:
        """After deciding a change: it must not widen what its own caller may see (a
        marketing agent granting e-mail consent would unmask the e-mail for themselves)."""
        if not field_access(principal, after).covers(field_access(principal, before)):
            raise Forbidden(
                f"{principal.role}:{rules.action}:widens-own-view",
                "a change may not widen what its own caller may see",
            )

    def _actions(self, principal: Principal, rules: CommandRules) -> list[str]:
        actions = [rules.action]
        if rules.assignee is not None:
            yourself = same_person(rules.assignee, principal.name)  # however it is spelled
            actions.append(self.ASSIGN_SELF if yourself else self.ASSIGN)
        return actions

    def _check_departments(self, rules: CommandRules) -> None:
        for field, value in rules.departments.items():
            if value not in self.departments:
                known = ", ".join(sorted(self.departments))
                raise ValidationFailed(field, f"unknown department {value[:40]!r} (one of {known})")
