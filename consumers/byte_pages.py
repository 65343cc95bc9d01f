"""Pages bounded in bytes by the database itself, on PostgreSQL and SQLite.

A page of rows holding values of unbounded size (a stored event of ~350 kB, a timeline
entry of 64 kB) is cut by a running sum of the rows' sizes, computed in SQL before any
value is handed over: the sizes first, then only the rows that fit. A page always holds
its first row, stops at the row that brings it to the budget (that row included: one
row over at most), and is a prefix of the plain page: nothing is skipped or reordered.

The notification log's page (`notifications_within`) is read this way by both event
store recorders (`services.pg_batch_recorder`, `services.sqlite_recorder`), for the
relay and the embedded follower: 2,000 of the largest events are ~700 MB, which a
memory-limited relay would read again, and die on, at every restart.

I/O: none (SQL text only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PAGE_BYTES = 16 * 1024 * 1024
"""The notification log's page budget: stored states' bytes (a normal event is ~1 kB, so
a page of 2,000 of them is never cut)."""


def octets(dialect: str, column: str, *, binary: bool = False) -> str:
    """SQL for the bytes a text (or, `binary`, a bytes) `column` holds (0 for NULL).
    PostgreSQL's `octet_length` takes a stored value's size from its header, without
    reading it; SQLite 3.40 has no `octet_length`, and its `length` of text would count
    characters: text is cast to a BLOB (which reads it), a BLOB's `length` is its bytes,
    from its header (300 BLOBs of 350 kB: ~1 ms, against ~70-170 ms cast, on this VM)."""
    if dialect == "postgresql":
        return f"coalesce(octet_length({column}), 0)"
    if binary:
        return f"coalesce(length({column}), 0)"
    return f"coalesce(length(CAST({column} AS BLOB)), 0)"


def notifications_within(dialect: str, table: str, id_column: str, marker: str) -> str:
    """SELECT id, originator_id, originator_version, topic, state of the notifications
    from id `start` on, in id order, at most `limit` of them, stopping at the one whose
    state brings the page to `max_bytes`; its parameters (each spelled `marker`) are
    `within_params`. The sizes of the `limit` rows from `start` are summed first (no
    state is read), which gives the page's last id; then the rows up to it are read
    as one range, in the same statement (the same snapshot: the same rows). Ids a
    rolled-back insert drew are simply absent, as in the plain read
    (`select_notifications`): the ids after `start` are read in order, whatever they are."""
    size = octets(dialect, "state", binary=True)
    sizes = (
        f"SELECT {id_column} AS id, {size} AS row_bytes FROM {table}"
        f" WHERE {id_column} >= {marker} ORDER BY {id_column} LIMIT {marker}"
    )
    last = (
        f"SELECT max(id) FROM (SELECT id, row_bytes, sum(row_bytes) OVER (ORDER BY id"
        f" ROWS UNBOUNDED PRECEDING) AS page_bytes FROM ({sizes}) s) r"
        f" WHERE r.page_bytes - r.row_bytes < {marker}"
    )
    return (
        f"SELECT {id_column}, originator_id, originator_version, topic, state FROM {table}"
        f" WHERE {id_column} >= {marker} AND {id_column} <= ({last}) ORDER BY {id_column}"
    )


def within_params(start: int, limit: int, max_bytes: int) -> tuple[int, int, int, int]:
    """The parameters of `notifications_within`, in the order its text names them (a
    budget under one byte is one: a page always holds its first row)."""
    return start, start, limit, max(max_bytes, 1)


def cut_short(page: Sequence[Any], limit: int, max_bytes: int) -> bool:
    """Whether a page read by `notifications_within` may have stopped before the end of
    the log: it holds `limit` rows, or its states reach `max_bytes` (a page cut by
    bytes always does; a page that ends the log exactly there costs one more read)."""
    return len(page) >= limit or sum(len(n.state) for n in page) >= max_bytes
