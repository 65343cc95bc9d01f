"""`?from=&to=`, for every route that takes a time range (satisfaction statistics, the
access log): the routes declare `From` and `To` and call `time_range` (a function, not
a dependency: a second dependency of a route is resolved in a task group of its own,
~200 us a request, a quarter of a statistics read's CPU). Each bound is a time with a
zone RFC 3339 writes: the request guard refuses any other text, a number among them
(the framework read `?from=1e9` as a Unix timestamp), with a 400 naming it before the
route runs (`domain.validation.instant_text`); `time_range` checks the zone again
(`rfc3339`, a 422) for callers the guard does not see. A range ending before its
start is a 400 naming both (`services.ranges`): it would find nothing and answer an
empty success. Statistics take any such bound (one beyond the UTC calendar is before or
after every answer); the access log's store takes those it can convert
(`in_calendar`). The CLI's times are the same rules (`services.cli_args`).
I/O: none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, NamedTuple

from litestar.params import QueryParameter

from domain.validation import aware, rfc3339
from services.api.http_errors import BadRequest
from services.ranges import backwards

NAMES = ("from", "to")


class TimeRange(NamedTuple):
    start: datetime | None  # None: open
    end: datetime | None

    def in_calendar(self) -> TimeRange:
        """The range, its bounds within what every store holds once converted to UTC
        (`domain.validation.aware`: else a 422 naming the bound)."""
        return _checked(aware, self)


From = Annotated[datetime | None, QueryParameter(name="from", description="RFC 3339, with a zone")]
To = Annotated[
    datetime | None, QueryParameter(description="RFC 3339, with a zone; not before from")
]


def time_range(from_: datetime | None, to: datetime | None) -> TimeRange:
    given = _checked(rfc3339, (from_, to))
    refused = backwards(*given)
    if refused is not None:
        raise BadRequest(refused)
    return given


def _checked(
    check: Callable[[datetime, str], datetime], bounds: Iterable[datetime | None]
) -> TimeRange:
    """`bounds` each passed through `check` with its parameter's name."""
    start, end = (
        None if t is None else check(t, name) for t, name in zip(bounds, NAMES, strict=True)
    )
    return TimeRange(start, end)
