"""What a customer's own fields accept: the profile (name, company, e-mail, phone,
address), its tags and its consents, checked and normalised before an event holds them.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from domain import fields as bound
from domain import validation as check
from domain.base import ValidationFailed

PROFILE_FIELDS = frozenset({"name", "company", "email", "phone", "address"})


def profile(**fields: str | None) -> dict[str, str | None]:
    """Validate and normalise whichever profile fields are given."""
    rules: dict[str, Any] = {
        "name": lambda v: check.text(v, "name") if v is not None else _no_name(),
        "company": lambda v: check.optional_text(v, "company"),
        "email": check.email,
        "phone": check.phone,
        "address": lambda v: check.optional_text(v, "address", bound.ADDRESS, multiline=True),
    }
    return {name: rules[name](value) for name, value in fields.items()}


def tags(given: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A registration's tags: sorted and unique, at most `MAX_TAGS`."""
    if len(given) > bound.MAX_TAGS:
        raise ValidationFailed("tags", f"more than {bound.MAX_TAGS} tags")
    return tuple(sorted({check.tag(t) for t in given}))


def consents(given: dict[str, bool]) -> dict[str, bool]:
    """A registration's consents, at most `MAX_CONSENTS`."""
    if len(given) > bound.MAX_CONSENTS:
        raise ValidationFailed("consents", f"more than {bound.MAX_CONSENTS} consents")
    return {check.code(k, "consents"): bool(v) for k, v in given.items()}


def _no_name() -> str:
    raise ValidationFailed("name", "must not be empty")
