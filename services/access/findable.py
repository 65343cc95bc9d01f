"""Which customers a search by personal fields may find (part of `services.access`).

Finding a customer by a value tells the value, so a search may only find customers each of
whose searched fields the caller reads: `customers_findable` works that out once per principal and
fields searched, for the search's query to keep only those rows (a department's, those
consenting to e-mail marketing) so that no page or cursor names a customer the caller may
not find. In: a `Principal` and the names of the personal fields searched. Out: a
`Findable`, or None when nothing may be searched. I/O: none.
"""

from __future__ import annotations

import functools
from uuid import UUID

import msgspec

from services.access.fields import field_access
from services.access.resources import Resource
from services.access.rules import READ_ACTIONS, Principal, Scope, scope_of


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
def customers_findable(principal: Principal, searched: tuple[str, ...]) -> Findable | None:
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
