"""`consumers.sqlite_values.stored_uuid`, the read models' UUID columns read from SQLite
(`rows_of`): the same UUID as `UUID(text)` gives, or refused alike, whatever the text."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from consumers.sqlite_values import rows_of, stored_uuid

ODD = st.text(alphabet="0123456789abcdefABCDEF-_+ x{}:urnid", min_size=28, max_size=45)


def outcome(read: Callable[[str], UUID], text: str) -> tuple[str, object]:
    try:
        made = read(text)
    except ValueError:
        return "refused", None
    return "read", (made.int, made.is_safe, str(made), hash(made))


@given(st.uuids())
def test_stored_text_gives_the_uuid(value: UUID) -> None:
    for text in (str(value), str(value).upper(), value.hex, f"{{{value}}}", value.urn):
        assert outcome(stored_uuid, text) == outcome(UUID, text)
        assert stored_uuid(text) == value


@given(ODD)
def test_any_text_is_read_or_refused_as_uuid_does(text: str) -> None:
    assert outcome(stored_uuid, text) == outcome(UUID, text)


def test_what_int_reads_besides_hex_digits_is_read_as_uuid_reads_it() -> None:
    digits = uuid.uuid4().hex
    odd = ["0x" + digits[2:], " " + digits[1:], "+" + digits[1:], digits[:8] + "_" + digits[9:]]
    odd += [digits[:31] + "-g", digits + "00", digits[:30]]
    for text in odd:
        assert outcome(stored_uuid, text) == outcome(UUID, text), text


def test_rows_of_types_uuid_columns() -> None:
    value = uuid.uuid4()
    (row,) = rows_of(["customer_id", "name"], ["uuid", None], [(str(value), "Ada")])
    assert row == {"customer_id": value, "name": "Ada"}
    assert type(row["customer_id"]) is UUID
