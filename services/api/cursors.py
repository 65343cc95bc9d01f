"""List cursors: what a page's `next_cursor` carries, and a sent one read back.

A customer list's cursor is the last customer's id; a conversation queue's, task
board's and timeline's is the sort values of the page's last row, a JSON array in
base64url (a keyset: `consumers.readmodel_queries.SortKey`). A cursor comes back from
the client, so it is read as any hostile input is, and one this API could not have
given is a 400 naming it:
* one bounded decoder (msgspec, into a short list of strings or nulls) reads the JSON:
  a nested array is the wrong type at its first element, not a recursion (`"[" * 5000`
  was a RecursionError), and text holding invalid UTF-8 or an escaped lone surrogate
  (`"\\ud800"`) is malformed (the stdlib's `json` took it, and the store could not
  encode it: a 500 on both stores);
* each text value is held to what a query parameter is: no NUL (PostgreSQL text holds
  none) and at most `TEXT_LIMIT` characters;
* each id is written as ids are (`domain.validation.uuid_text`);
* each time is RFC 3339 with a zone, read as a query's time is
  (`domain.validation.instant_text`: an offset of at most ±23:59), as every time a
  store gives back is. An offset of -23:59:59.999999 overflowed converting to UTC on
  SQLite (a 500) and was served on PostgreSQL. Any instant is taken: rows stored
  before the domain bounded times to 1900..9999 in UTC hold some outside, and a page
  ending at one names it.
I/O: none.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from consumers.readmodel_queries import BOARD_ORDER, QUEUE_ORDER, TIMELINE_ORDER, SortKey
from domain import fields as bound
from domain.base import ValidationFailed
from domain.validation import instant_text, uuid_text
from services.api.http_errors import BadRequest

TEXT_LIMIT = bound.LINE
"""The most characters a cursor's text value holds. The longest a list sorts by is a
timeline entry's id: a UUID, `/m/` and a message id of at most `PERSON` characters."""
_LONGEST = max(len(order) for order in (QUEUE_ORDER, BOARD_ORDER, TIMELINE_ORDER))
_Text = Annotated[str, msgspec.Meta(max_length=TEXT_LIMIT, pattern=r"^[^\x00]*$")]
_values = msgspec.json.Decoder(Annotated[list[_Text | None], msgspec.Meta(max_length=_LONGEST)])


def keyset_cursor(values: Sequence[str | None]) -> str:
    """The cursor naming a row by its sort values (as `spelled`)."""
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode()


def spelled(value: Any) -> str | None:
    """A sort value as a cursor spells it (PostgreSQL gives objects, SQLite text)."""
    if value is None or isinstance(value, str):
        return value
    return value.isoformat() if isinstance(value, datetime) else str(value)


def keyset_after(cursor: str | None, keys: Sequence[SortKey]) -> list[Any] | None:
    """The sort values a `keyset_cursor` carries, typed for the query on `keys`."""
    if cursor is None:
        return None
    try:
        values = _values.decode(base64.urlsafe_b64decode(cursor.encode()))
        if len(values) != len(keys):
            raise ValueError("wrong shape")
        return [_typed(key, value) for key, value in zip(keys, values, strict=True)]
    except (ValueError, msgspec.DecodeError, ValidationFailed):  # binascii.Error,
        raise _not_given(cursor) from None  # UnicodeError are ValueErrors


def uuid_after(cursor: str | None) -> UUID | None:
    """The customer id a customer list's cursor names, written as ids are (Python's
    `UUID` takes Unicode digits, braces and, among 32 characters, a `+` or `_`)."""
    if cursor is None:
        return None
    try:
        return uuid_text(cursor, "cursor")
    except ValidationFailed:
        raise _not_given(cursor) from None


def _typed(key: SortKey, value: str | None) -> Any:
    if value is None:
        if key.nullable:
            return None
        raise ValueError(f"{key.column} must not be null")
    if key.kind == "uuid":
        return uuid_text(value, key.column)
    if key.kind == "timestamp":  # with a zone: a store would read one without as local
        return instant_text(value, key.column)
    return value


def _not_given(cursor: str) -> BadRequest:
    return BadRequest(f"cursor {cursor[:40]!r} is not one this list gave")
