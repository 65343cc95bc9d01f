"""A list's page is made of the rows its caller may read alone (`read_models.Assembly`).

Rows are left out of a page only while a read model lags (its SQL keeps only readable
rows), so the page reads on after the last row read until it keeps `limit` + 1 rows or
the list ends: neither its items nor its `next_cursor` (a row's, or null) may depend on
a row left out. Here each read's rows are given, and which are kept.
"""

from __future__ import annotations

from uuid import UUID

import pytest

from services.api import read_models
from services.api.http_errors import NotCaughtUp
from services.api.read_models import (
    EXTRA_READS,
    REREAD_ROWS,
    Assembly,
    Fetched,
    ListBehind,
    Row,
    cursor_of,
)


def _row(n: int) -> Row:
    return {"customer_id": UUID(int=n)}


def _read(numbers: range, asked: int, sizes: list[int] | None = None) -> Fetched:
    rows = [_row(n) for n in numbers]
    full = sizes is not None and sum(sizes) >= read_models.TIMELINE_PAGE_BYTES
    return {"items": rows, "more": full or len(rows) >= asked, "sizes": sizes}


def _assembled(
    limit: int, reads: list[tuple[range, set[int]]], sizes: int | None = None
) -> tuple[list[int], str | None, list[str | None]]:
    """The page's items and cursor, and where each read after the first starts; each
    row `sizes` bytes (None: a list without a size bound)."""
    assembly: Assembly[int] = Assembly("customers", limit)
    afters: list[str | None] = []
    for numbers, kept in reads:
        each = None if sizes is None else [sizes] * len(numbers)
        fetched = _read(numbers, assembly.rows, each)
        after = assembly.take(fetched, [n if n in kept else None for n in numbers])
        afters.append(after)
        if after is None:
            break
    items, cursor = assembly.page()
    return items, cursor, afters


def test_a_page_keeping_every_row_reads_once_and_names_its_last_row() -> None:
    items, cursor, afters = _assembled(2, [(range(1, 4), {1, 2, 3})])
    assert (items, cursor, afters) == ([1, 2], str(UUID(int=2)), [None])


def test_the_end_of_a_list_read_in_one_is_a_null_cursor() -> None:
    assert _assembled(2, [(range(1, 3), {1, 2})])[:2] == ([1, 2], None)


def test_a_page_leaving_rows_out_reads_on_after_the_last_row_read() -> None:
    """The row left out (2) is neither an item nor the cursor: the cursor is the last
    item's, given because a row kept follows (4)."""
    items, cursor, afters = _assembled(2, [(range(1, 4), {1, 3}), (range(4, 10), {4})])
    assert (items, cursor) == ([1, 3], str(UUID(int=3)))
    assert afters == [cursor_of("customers", _row(3)), None]


def test_rows_left_out_at_the_end_give_no_cursor() -> None:
    """Before: a page `?limit=1` of a row left out answered no item and its id as the
    cursor; a page whose next row was one left out answered a cursor to nothing."""
    assert _assembled(1, [(range(1, 3), set())])[:2] == ([], None)
    assert _assembled(1, [(range(1, 3), {1})])[:2] == ([1], None)


def test_reading_on_asks_for_at_least_reread_rows() -> None:
    assembly: Assembly[int] = Assembly("customers", 1)
    assert assembly.rows == 2
    assembly.take(_read(range(1, 3), 2), [None, None])
    assert assembly.rows == REREAD_ROWS


def test_at_the_bound_rows_kept_are_answered_with_a_cursor_after_the_last() -> None:
    more = [(range(10 * i, 10 * i + REREAD_ROWS), set[int]()) for i in range(1, EXTRA_READS + 1)]
    items, cursor, afters = _assembled(1, [(range(1, 3), {1}), *more])
    assert (items, cursor) == ([1], str(UUID(int=1)))
    assert afters[-1] is None
    assert len(afters) == EXTRA_READS + 1


def test_at_the_bound_a_page_that_kept_nothing_is_not_caught_up() -> None:
    """No cursor can name a row read without naming one left out: 503 `not-caught-up`."""
    assembly: Assembly[int] = Assembly("customers", 1)
    for read in range(EXTRA_READS):
        start, asked = read * REREAD_ROWS, assembly.rows
        assert assembly.take(_read(range(start, start + asked), asked), [None] * asked)
    last = _read(range(1000, 1000 + REREAD_ROWS), REREAD_ROWS)
    with pytest.raises(ListBehind) as raised:
        assembly.take(last, [None] * REREAD_ROWS)
    assert isinstance(raised.value, NotCaughtUp)


def test_a_page_stops_at_its_size_bound_counting_the_rows_kept_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A timeline page stops at the entry bringing its rows to `TIMELINE_PAGE_BYTES`,
    and names it; rows left out count for nothing: a read stopped at the bound by them
    reads on (here 10 bytes a row, a bound of 30)."""
    monkeypatch.setattr(read_models, "TIMELINE_PAGE_BYTES", 30)
    items, cursor, afters = _assembled(5, [(range(1, 5), {1, 2, 3, 4})], sizes=10)
    assert (items, cursor, len(afters)) == ([1, 2, 3], str(UUID(int=3)), 1)
    reads = [(range(1, 4), {1}), (range(4, 7), {5, 6}), (range(7, 10), {7, 8})]
    items, cursor, afters = _assembled(5, reads, sizes=10)
    assert (items, cursor, len(afters)) == ([1, 5, 6], str(UUID(int=6)), 2)
    assert _assembled(5, [(range(1, 4), {1}), (range(4, 5), set())], sizes=10)[:2] == ([1], None)
