"""Opening the personal columns of read-model rows, which hold sealed values.

Projections store personal fields as the events carry them, sealed under the customer's
key (`enc:v1:...`); a column derived from several of them (a timeline entry's `content`)
joins their sealed values with newlines, which no sealed value contains. Erasure blanks
them to `ERASED`, and values stored before sealing existed are plaintext: both pass
through unchanged. Whoever serves rows opens only the columns its reader may see,
fetching the keys of the rows' customers in one query (`Keyring.opener`, or the caller's
own query for `to_open`), and only when something is sealed at all.

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
    subjects = to_open(wanted, subject)
    if subjects:
        open_rows_with(keyring.opener(subjects), wanted, subject)


def to_open(wanted: Sequence[Wanted], subject: str = SUBJECT) -> set[UUID]:
    """The customers whose keys opening `wanted` needs (none: nothing is sealed)."""
    return {_uuid(row[subject]) for row, columns in wanted if any(sealed(row[c]) for c in columns)}


def open_rows_with(open_value: Opener, wanted: Sequence[Wanted], subject: str = SUBJECT) -> None:
    """Open the named columns of each row, in place, with keys the caller fetched for
    them (`to_open`; `consumers.keyring.opener_of`)."""
    for row, columns in wanted:
        owner = None  # the row's customer, parsed once it has something sealed
        for column in columns:
            if sealed(value := row[column]):
                owner = owner or _uuid(row[subject])
                row[column] = open_column(open_value, owner, value)


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
