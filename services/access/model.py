"""The access model's decisions, asked by every read path and every command (`services.access`).

`AccessModel` holds the configured departments (`CRM_DEPARTMENTS`) and answers, from the
rules (`services.access.rules`) and the field access (`services.access.fields`): whether a
resource may be read (else `NotFound`, as for an id that exists nowhere) and which of its
fields the caller reads; what a past state or event shows (history, `as_of`, the stream,
lagging read-model rows); which department a department-wide read covers; and whether a
command may run, before and after it decides. In: a `Principal`, `CommandRules`,
`Resource`s. Out: a `FieldAccess`, None (left out), or `NotFound`, `Forbidden`,
`ValidationFailed`, `CustomerErasedError`. I/O: none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

import msgspec

from domain.base import NotFound, ValidationFailed
from domain.customer import CustomerErasedError
from domain.validation import same_person
from services.access.fields import FieldAccess, consent_decides, field_access
from services.access.findable import Findable, customers_findable
from services.access.resources import Resource
from services.access.rules import (
    READ_ACTIONS,
    Forbidden,
    Principal,
    Scope,
    allows,
    authorize,
    rule_name,
    scope_of,
)

DEFAULT_DEPARTMENTS = ("sales", "support", "marketing")


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
        return consent_decides(principal, kind)

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
        return customers_findable(principal, tuple(searched))

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
