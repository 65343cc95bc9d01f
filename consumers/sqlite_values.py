"""How names and values cross into a SQLite read-model store and back.

Identifiers are quoted by `ident` (they come from the projections' declarative
schemas, never from users); values always travel as parameters, as `to_sqlite` stores
them (UUIDs and decimals as text, instants as UTC ISO text, which sorts as they do).
The shared queries' psycopg placeholders become SQLite's (`placeholders`). Stored rows
come back as dicts of their columns' Python values (`rows_of`, `from_sqlite`; UUIDs by
`stored_uuid`, in half `UUID`'s time). Used by `sqlite_session`, `sqlite_tables` and
`store_sqlite`. I/O: none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, SafeUUID

from consumers.instants import canonical
from projections.base import Row, Table


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def placeholders(query: str) -> str:
    """`%(name)s` (the psycopg style the shared queries use) to SQLite's `:name`."""
    return re.sub(r"%\((\w+)\)s", r":\1", query)


def to_sqlite(value: Any) -> Any:
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return canonical(value).isoformat()  # UTC text: sorts as the instants do
    return value


def stored_uuid(text: str) -> UUID:
    """`UUID(text)` for the text `to_sqlite` stores (`str(UUID)`), in half the time: a
    page converts one or more a row. The steps `UUID.__init__` takes for such text
    (hyphens dropped, 32 characters read as one hexadecimal int, which refuses what is
    not); text of another length goes through `UUID` itself (braces, `urn:uuid:`), so
    every text gives the same UUID or is refused alike."""
    digits = text.replace("-", "")
    if len(digits) != _HEX_DIGITS:
        return UUID(text)
    made = _new(UUID)
    _set(made, "int", int(digits, 16))
    _set(made, "is_safe", _UNKNOWN)
    return made


_HEX_DIGITS = 32
_new, _set, _UNKNOWN = object.__new__, object.__setattr__, SafeUUID.unknown

_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "uuid": stored_uuid,
    "timestamp": datetime.fromisoformat,
    "numeric": lambda value: Decimal(str(value)),
    "bool": bool,
}
"""Column types whose stored values are not their Python values already."""


def rows_of(
    columns: Sequence[str], kinds: Sequence[str | None], rows: Iterable[Sequence[Any]]
) -> list[Row]:
    """Stored rows as dicts of the Python values of their columns' types (`kinds`; None:
    as stored). Only the columns whose type needs converting are visited one by one; the
    dict of the rest is built in C."""
    typed = [
        (number, column, convert)
        for number, (column, kind) in enumerate(zip(columns, kinds, strict=True))
        if kind is not None and (convert := _CONVERTERS.get(kind)) is not None
    ]
    records = []
    for row in rows:
        record = dict(zip(columns, row, strict=False))  # a row holds every column
        for number, column, convert in typed:
            if (value := row[number]) is not None:
                record[column] = convert(value)
        records.append(record)
    return records


def from_sqlite(table: Table, rows: Iterable[Sequence[Any]]) -> list[Row]:
    """Rows of `table` as stored (`SELECT *`), as dicts of Python values."""
    return rows_of([c.name for c in table.columns], [c.type for c in table.columns], rows)
