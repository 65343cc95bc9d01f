"""CSAT and NPS answers: when a conversation takes one, and whom it credits.

An answer comes after the conversation closed, at most one of each kind per closing,
and credits the department and agent that held the conversation then, fixed in the
event, so statistics (`projections.stats`) never drift when a conversation or an agent
later moves.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from domain import fields as bound
from domain import validation as check
from domain.base import InvalidTransition

CSAT_SCALE = (1, 5)
NPS_SCALE = (0, 10)


class SurveyNotAllowedError(InvalidTransition):
    """Survey answers only after closing, and at most one of each kind per closing."""


def require_survey_open(status: str, given: bool, kind: str) -> None:
    """A conversation in `status` takes a `kind` answer (`given`: one was, this closing)."""
    if status != "closed":
        raise SurveyNotAllowedError(f"{kind} answers only after the conversation closed")
    if given:
        raise SurveyNotAllowedError(f"{kind} already answered for this closing")


def answer(
    score: int, scale: tuple[int, int], comment: str | None, *, agent: str | None, department: str
) -> dict[str, Any]:
    """Fields of a survey answer; closed conversations cannot move, so the department and
    agent given are those at closing time."""
    low, high = scale
    return {
        "score": check.score(score, low, high),
        "comment": check.optional_text(comment, "comment", bound.PARAGRAPH, multiline=True),
        "agent": agent,
        "department": department,
    }
