"""`typed_fetch` answers comma-joined columns (`tags`, `departments`) as lists of their
items, the same for every row of a page, whatever the store handed over."""

from __future__ import annotations

from typing import Any

from consumers.typed_rows import typed_fetch


class _Rows:
    """A store answering given rows (copies) to any query."""

    dialect = "sqlite"

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def fetch(self, *_args: Any) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows]


def _fetched(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return typed_fetch(_Rows(rows), "SELECT", {"c": "shared.customers"}, {})  # type: ignore[arg-type]


def test_joined_columns_are_lists_of_their_items() -> None:
    rows: list[dict[str, Any]] = [
        {"tags": "", "departments": "sales"},
        {"tags": "b2b", "departments": "sales,support"},
        {"tags": "b2b,,vip,", "departments": ",sales"},  # empty items are no items
        {"tags": None, "departments": ["sales"]},  # not text: left as it is
    ]
    assert _fetched(rows) == [
        {"tags": [], "departments": ["sales"]},
        {"tags": ["b2b"], "departments": ["sales", "support"]},
        {"tags": ["b2b", "vip"], "departments": ["sales"]},
        {"tags": None, "departments": ["sales"]},
    ]


def test_rows_without_joined_columns_and_no_rows_pass_through() -> None:
    assert _fetched([{"name": "a,b"}]) == [{"name": "a,b"}]
    assert _fetched([]) == []
