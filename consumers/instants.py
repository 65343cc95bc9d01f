"""Instants at the edges of the calendar, as both read-model stores give them back.

The domain accepts any aware datetime, and Python covers years 1 to 9999 in *local*
time: 0001-01-01T00:00+14:00 is a valid value whose UTC instant lies in year 0, and
9999-12-31T23:59:59-23:59 one in year 10000. `astimezone(UTC)` raises OverflowError
on them, and PostgreSQL stores them but psycopg refuses to load them back.

`canonical` is the one form a store keeps and answers: the instant in UTC whenever
Python can write it so, else the same instant at the offset that brings it into range
(+23:59 before year 1, -23:59 after 9999). Both stores answer the same value, which
equals the event's own (aware datetimes compare as instants). Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

EDGE_OFFSET = timedelta(hours=23, minutes=59)
"""The widest offset RFC 3339 text can carry, the form every event time arrives in."""
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""PostgreSQL's epoch: a binary timestamptz counts microseconds from it."""
_NAIVE_EPOCH = EPOCH.replace(tzinfo=None)


def canonical(instant: datetime) -> datetime:
    """`instant` in UTC, or at ±23:59 where its UTC form is outside years 1-9999."""
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        return after_epoch(instant - EPOCH)


def after_epoch(delta: timedelta) -> datetime:
    """The instant `EPOCH + delta`, in its `canonical` form.

    Raises OverflowError only for instants no aware datetime can hold (more than
    23:59 beyond the calendar's ends), which no RFC 3339 time can name.
    """
    try:
        return EPOCH + delta
    except OverflowError:
        offset = EDGE_OFFSET if delta < timedelta(0) else -EDGE_OFFSET
        return (_NAIVE_EPOCH + (delta + offset)).replace(tzinfo=timezone(offset))
