"""Opening the personal columns of read-model rows, which hold sealed values.

Projections store personal fields as the events carry them, sealed under the customer's
key (`enc:v1:...`); a column derived from several of them (a timeline entry's `content`)
joins their sealed values with newlines, which no sealed value contains. Erasure blanks
them to `ERASED`, and values stored before sealing existed are plaintext: both pass
through unchanged. Whoever serves rows opens only the columns its reader may see,
fetching the keys of the rows' customers in one query (`Keyring.opener`, or the caller's
own query for `owners(sealed_cells(...))`), and only when something is sealed at all.

I/O: the key store, once per call that has something to open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from consumers.keyring import PREFIX, Keyring, Opener
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
        open_cells(keyring.opener(owners(cells)), cells)


Cell = tuple[Row, str, UUID]
"""A row, one of its columns holding a sealed value, and the customer it belongs to."""


def sealed_cells(wanted: Sequence[Wanted], subject: str = SUBJECT) -> list[Cell]:
    """The cells of `wanted` to open: its named columns that hold sealed values (none:
    nothing to open, and no key to fetch)."""
    cells: list[Cell] = []
    for row, columns in wanted:
        owner = None  # the row's customer, parsed once it has something sealed
        for column in columns:
            if sealed(row[column]):
                owner = owner or _uuid(row[subject])
                cells.append((row, column, owner))
    return cells


def owners(cells: Iterable[Cell]) -> list[UUID]:
    """The customers whose keys opening `cells` needs, each once (told apart by their
    ints: a `UUID`'s hash and equality are Python methods)."""
    return list({owner.int: owner for _, _, owner in cells}.values())


def open_cells(open_value: Opener, cells: Iterable[Cell]) -> None:
    """Open each cell in place, with keys the caller fetched for them (`owners`;
    `consumers.keyring.opener_of`)."""
    for row, column, owner in cells:
        row[column] = open_column(open_value, owner, row[column])


def open_column(open_value: Opener, subject: UUID, value: str) -> str:
    """One column's value opened: one sealed value, or several joined by `JOIN`."""
    if JOIN not in value:
        return open_value(subject, value)
    parts = [open_value(subject, part) for part in value.split(JOIN)]
    if all(part == ERASED for part in parts):
        return ERASED
    return JOIN.join(parts)


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
