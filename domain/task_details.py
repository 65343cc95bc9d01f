"""What a task's details accept: its title, description and priority.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from domain import fields as bound
from domain import validation as check

PRIORITIES = frozenset({"low", "normal", "high", "urgent"})
Priority = Literal["low", "normal", "high", "urgent"]


def given_details(
    title: str | msgspec.UnsetType,
    description: str | msgspec.UnsetType | None,
    priority: str | msgspec.UnsetType,
) -> dict[str, Any]:
    """The details given (not UNSET), checked and normalised, by name."""
    given: dict[str, Any] = {}
    if not isinstance(title, msgspec.UnsetType):
        given["title"] = check.text(title, "title")
    if not isinstance(description, msgspec.UnsetType):
        given["description"] = description_text(description)
    if not isinstance(priority, msgspec.UnsetType):
        given["priority"] = check.one_of(priority, PRIORITIES, "priority")
    return given


def description_text(description: str | None) -> str | None:
    return check.optional_text(description, "description", bound.DOCUMENT, multiline=True)
