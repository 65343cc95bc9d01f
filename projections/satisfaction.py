"""Where CSAT and NPS are computed: the standard formulas, in one place.

CSAT = answers of 4 or 5 / all answers x 100. NPS = % promoters (9-10) - % detractors
(0-6), from -100 to 100. Both are None when there are no answers (not 0: "no data"
and "everyone unhappy" must not look alike). Time buckets use the event's
`occurred_at` in UTC, ISO weeks, so a rebuild buckets exactly as the live run did.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

NpsCategory = Literal["promoter", "passive", "detractor"]
GRANULARITIES = ("day", "week", "month", "all")
ALL = "*"
"""Stands for "all departments" / "all agents" / the whole history in stats keys."""


def csat(answers: int, positive: int) -> float | None:
    return None if answers == 0 else round(positive * 100 / answers, 2)


def nps(answers: int, promoters: int, detractors: int) -> float | None:
    return None if answers == 0 else round((promoters - detractors) * 100 / answers, 2)


def is_satisfied(score: int) -> bool:
    return score >= 4


def nps_category(score: int) -> NpsCategory:
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def bucket(at: datetime, granularity: str) -> str:
    """The bucket label of an instant: `2024-05-31`, `2024-W22`, `2024-05`, or `*`."""
    utc = at.astimezone(UTC)
    if granularity == "day":
        return utc.strftime("%Y-%m-%d")
    if granularity == "week":
        year, week, _ = utc.isocalendar()
        return f"{year}-W{week:02d}"
    if granularity == "month":
        return utc.strftime("%Y-%m")
    return ALL
