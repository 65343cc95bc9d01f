"""Opening the personal columns of read-model rows, which hold sealed values.

Projections store personal fields as the events carry them, sealed under the customer's
key (`enc:v1:...`); a column derived from several of them (a timeline entry's `content`)
joins their sealed values with newlines, which no sealed value contains. Erasure blanks
them to `ERASED`, and values stored before sealing existed are plaintext: both pass
through unchanged. Whoever serves rows opens only the columns its reader may see,
fetching the keys of the rows' customers in one query (`Keyring.keys_now`, or the
caller's own query for `owners(sealed_cells(...))`), and only when something is sealed.

I/O: the key store, once per call that has something to open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

from consumers.keyring import PREFIX, Keyring, value_opener
from domain.base import ERASED
from projections.base import Row

JOIN = "\n"
SUBJECT = "customer_id"
"""The column naming the customer whose key seals a row's personal columns."""

Wanted = tuple[Row, Iterable[str]]
"""A row and the personal columns of it to open (those its reader may see)."""


def sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def open_rows(keyring: Keyring, wanted: Sequence[Wanted], subject: str = SUBJECT) -> None:
    """Open the named columns of each row, in place (one key query for them all)."""
    if cells := sealed_cells(wanted, subject):
        found = keyring.keys_now(owners(cells))
        open_cells({owner.int: key for owner, key in found.items()}, cells)


Cells = tuple[Row, UUID, list[str]]
"""A row, the customer it belongs to, and its columns holding sealed values."""


def sealed_cells(wanted: Sequence[Wanted], subject: str = SUBJECT) -> list[Cells]:
    """The cells of `wanted` to open, a row's together: its named columns that hold
    sealed values (none: nothing to open, and no key to fetch)."""
    cells: list[Cells] = []
    for row, columns in wanted:
        sealed_columns: list[str] | None = None  # listed once the row has something sealed
        for column in columns:
            value = row[column]  # `sealed`, written out: a page has ~150 of them
            if isinstance(value, str) and value.startswith(PREFIX):
                if sealed_columns is None:
                    sealed_columns, owner = [], row[subject]  # `_uuid` written out: see above
                    owner = owner if isinstance(owner, UUID) else _uuid(owner)
                    cells.append((row, owner, sealed_columns))
                sealed_columns.append(column)
    return cells


def owners(cells: Iterable[Cells]) -> list[UUID]:
    """The customers whose keys opening `cells` needs, each once (told apart by their
    ints: a `UUID`'s hash and equality are Python methods)."""
    return list({owner.int: owner for _, owner, _ in cells}.values())


def open_cells(keys: Mapping[int, bytes | None], cells: Iterable[Cells]) -> None:
    """Open each cell in place, with the keys the caller fetched for them (`owners`), by
    their subjects' ints (see `owners`): a subject without one (erased) opens as
    `ERASED`. Each subject's opener is made once, when its first row comes."""
    openers: dict[int, Callable[[str], str]] = {}
    for row, owner, columns in cells:
        open_value = openers.get(number := owner.int)
        if open_value is None:
            open_value = openers[number] = value_opener(owner, keys.get(number))
        for column in columns:
            value = row[column]
            row[column] = open_value(value) if JOIN not in value else _joined(open_value, value)


def _joined(open_value: Callable[[str], str], value: str) -> str:
    """A column holding several sealed values joined by `JOIN`, opened."""
    parts = [open_value(part) for part in value.split(JOIN)]
    if all(part == ERASED for part in parts):
        return ERASED
    return JOIN.join(parts)


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
