"""A range from a start to an end, as the CLI's `--from/--to` (`services.cli_args`) and
the API's `?from=&to=` (`services.api.time_range`) take it. One whose end lies before
its start holds nothing, so it checked or found nothing and answered as a success (an
empty page, zero statistics, a log "intact"): both refuse it, in the words of
`backwards`. A range of one instant or position is a range.
I/O: none.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

Bound = TypeVar("Bound", int, datetime)  # positions, zoned times


def backwards(
    start: Bound | None, end: Bound | None, *, first: str = "from", last: str = "to"
) -> str | None:
    """Why the range is refused, naming both bounds (as `first` and `last` call them),
    or None: it is open at either end, or ends at or after its start."""
    if start is None or end is None or not end < start:
        return None
    return f"{last} {_shown(end)} is before {first} {_shown(start)}"


def _shown(bound: int | datetime) -> str:
    return bound.isoformat() if isinstance(bound, datetime) else str(bound)
