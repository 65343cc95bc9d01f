"""Who may judge a task's work, and by which due time.

An evaluation credits the assignee of the completion and must come from someone else,
and so must every decision that changes how the work is judged once it is: reopening a
completion that was evaluated or late (the statistics take back what it counted) and
moving a due time that has passed (the on-time verdict). Who set a passed due time anew
is not assigned the task: it would judge their own work. A name is the assignee's however
it is spelled (`validation.same_person`).

Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime

from domain import validation as check
from domain.base import PermissionDenied


class SelfEvaluationError(PermissionDenied):
    """The assignee may not judge their own work: evaluate it, take back a judgement of it
    or move the deadline it is judged by once that has passed."""


def require_not_assignee(actor: str, assignee: str | None, action: str) -> None:
    """Refuses the assignee however their name is spelled (`validation.same_person`)."""
    if check.same_person(actor, assignee):
        raise SelfEvaluationError(f"the assignee may not {action}: someone else may")


def require_not_late_due_setter(assignee: str, late_due_setter: str | None) -> None:
    """Whoever set the due time over one that had passed may not be assigned the task."""
    if check.same_person(assignee, late_due_setter):
        raise SelfEvaluationError(
            "whoever set this task's due time after the one before had passed may not"
            " be its assignee: once someone else sets the due time, they may"
        )


def passed(due_at: datetime | None, at: datetime) -> bool:
    """Whether `due_at` had passed at `at`: a completion at the due time is on time."""
    return due_at is not None and due_at < at


def on_time(due_at: datetime | None, completed_at: datetime) -> bool | None:
    """A completion's verdict: None when the task had no due time."""
    return None if due_at is None else completed_at <= due_at
