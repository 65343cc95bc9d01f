"""Where CSAT and NPS are computed: the standard formulas and the periods, in one place.

CSAT = answers of 4 or 5 / all answers x 100. NPS = % promoters (9-10) - % detractors
(0-6), from -100 to 100. Both are None when there are no answers (not 0: "no data"
and "everyone unhappy" must not look alike). Time buckets use the event's
`occurred_at` in UTC, ISO weeks, so a rebuild buckets exactly as the live run did.
A query's range [from, to] takes every bucket it touches (`bucket_range`). The `stats`
projection counts answers with these rules, and `crm stats satisfaction` replays the
answers through that same projection, so both answer alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

NpsCategory = Literal["promoter", "passive", "detractor"]
GRANULARITIES = ("day", "week", "month", "all")
ALL = " (all)"
"""Stands for "all departments" / "all agents" in stats keys. It starts with a space and
no name can: the domain strips every name (and has since its first release), so a
department, agent or assignee named `*` or `(all)` is counted as itself, never as everyone,
and a query naming one cannot select this row (`consumers.readmodel_queries`)."""
ALL_TIME = "*"
"""The one bucket of granularity `all` (the granularity, part of the key, tells it apart)."""


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
    """The bucket label of an instant: `2024-05-31`, `2024-W22`, `2024-05`, or `ALL_TIME`."""
    utc = at.astimezone(UTC)
    if granularity == "day":
        return utc.strftime("%Y-%m-%d")
    if granularity == "week":
        year, week, _ = utc.isocalendar()
        return f"{year}-W{week:02d}"
    if granularity == "month":
        return utc.strftime("%Y-%m")
    return ALL_TIME


_FIRST_BUCKET = datetime(1, 1, 1, tzinfo=UTC)
BucketRange = tuple[str | None, str | None]
"""The first and last bucket label in a range; None: unbounded on that side."""


def bucket_range(
    start: datetime | None, end: datetime | None, granularity: str
) -> BucketRange | None:
    """The buckets an instant range [`start`, `end`] touches, or None if it holds none.

    An instant outside years 1-9999 in UTC (9999-12-31T23:59:59-23:59 is in year 10000)
    bounds nothing on its own side and excludes everything on the other.
    """
    low, high = _label(start, granularity), _label(end, granularity)
    if low == _AFTER or high == _BEFORE:
        return None
    return (None if low == _BEFORE else low), (None if high == _AFTER else high)


_BEFORE, _AFTER = "<", ">"


def _label(instant: datetime | None, granularity: str) -> str | None:
    if instant is None:
        return None
    try:
        return bucket(instant, granularity)
    except OverflowError:
        return _BEFORE if instant < _FIRST_BUCKET else _AFTER
