"""Which personal fields a caller may not read, and their masking (part of `services.access`).

Which fields are personal is declared once, in the domain; `field_access` decides which of
them a principal may not read of a `Resource` (analysts: none at all; marketing staff: no
phone or address, an e-mail only with the customer's consent, no author of a
conversation's entries), and `mask` applies that decision to a document, opening (with an
opener) only what the caller may see. In: a `Principal` and a `Resource`; a document, its
personal paths and a `FieldAccess`. Out: a `FieldAccess`; the document, changed in place.
I/O: none.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from domain.base import MASKED
from services.access.resources import Resource
from services.access.rules import Principal, Role

MARKETING = "marketing"


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


def consent_decides(principal: Principal, kind: str) -> bool:
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
