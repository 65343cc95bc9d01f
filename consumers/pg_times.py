"""Reading timestamptz values at the edges of the calendar from PostgreSQL.

PostgreSQL stores instants from 4713 BC on, and the domain accepts times whose UTC
instant lies in year 0 or 10000 (see `consumers.instants`); psycopg refuses to load
those. `edge_cursor` is a cursor whose timestamptz loader also takes them, as their
`canonical` form. It costs a Python call per value over psycopg's C loader, so the
hot path of a replay (`PgSession.load_rows`) reads with the C loader and turns to an
edge cursor only when the C loader refused a value (`with_edges`).

I/O: none of its own; cursors of the caller's connection.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import Connection, pq
from psycopg.adapt import Buffer, Loader
from psycopg.rows import dict_row

from consumers.instants import after_epoch

T = TypeVar("T")
TIMESTAMPTZ = psycopg.adapters.types["timestamptz"].oid
_FAST = psycopg.adapters.get_loader(TIMESTAMPTZ, pq.Format.BINARY)


class EdgeTimestamptzLoader(Loader):
    """psycopg's binary timestamptz loader, plus the instants it refuses."""

    format = pq.Format.BINARY

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        assert _FAST is not None
        self._fast = _FAST(oid, context)

    def load(self, data: Buffer) -> datetime:
        try:
            loaded: datetime = self._fast.load(data)
        except psycopg.DataError:  # microseconds since 2000-01-01 UTC, beyond Python's UTC
            return after_epoch(timedelta(microseconds=int.from_bytes(data, "big", signed=True)))
        return loaded


def edge_cursor(conn: Connection[Any]) -> psycopg.Cursor[dict[str, Any]]:
    """A binary cursor of dict rows whose times may lie at the calendar's edges."""
    cursor = conn.cursor(row_factory=dict_row, binary=True)
    cursor.adapters.register_loader(TIMESTAMPTZ, EdgeTimestamptzLoader)
    return cursor


def with_edges(conn: Connection[Any], read: Callable[[psycopg.Cursor[Any]], T]) -> T:
    """`read` through a fast binary cursor; again through an `edge_cursor` if a value
    failed to load (a client-side refusal: the transaction is still good)."""
    try:
        with conn.cursor(row_factory=dict_row, binary=True) as cursor:
            return read(cursor)
    except psycopg.DataError:
        if conn.info.transaction_status == pq.TransactionStatus.INERROR:
            raise  # the server refused: not a value psycopg could not load
    with edge_cursor(conn) as cursor:
        return read(cursor)
