"""A list cursor sent back is read as hostile input: what this API gives reads back as
the sort values it named, and anything else is a 400 naming the cursor, never an error
of the JSON decoder or of a store (red-team review: each case below was a 500)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from consumers.readmodel_queries import BOARD_ORDER, QUEUE_ORDER, TIMELINE_ORDER, SortKey
from services.api.cursors import TEXT_LIMIT, keyset_after, keyset_cursor, spelled, uuid_after
from services.api.http_errors import BadRequest

ROW = str(uuid4())
AT = "2024-01-01T00:00:00+00:00"


def encoded(json_text: str) -> str:
    """`json_text` as a cursor carries it (the JSON escapes written as given)."""
    return base64.urlsafe_b64encode(json_text.encode()).decode()


def test_a_cursor_this_api_gives_reads_back_as_the_values_it_named() -> None:
    edge = datetime(1, 1, 1, 9, 59, tzinfo=timezone(timedelta(hours=23, minutes=59)))
    row = {"assignee": "mia 😀", "status": "open", "due_at": edge, "task_id": UUID(ROW)}
    cursor = keyset_cursor([spelled(row[key.column]) for key in BOARD_ORDER])
    assert keyset_after(cursor, BOARD_ORDER) == list(row.values())
    cursor = keyset_cursor([None, ROW])
    assert keyset_after(cursor, QUEUE_ORDER) == [None, UUID(ROW)]
    assert keyset_after(None, QUEUE_ORDER) is None
    assert uuid_after(ROW) == UUID(ROW)


HOSTILE = {
    "an escaped lone high surrogate": (TIMELINE_ORDER, f'["{AT}", "\\ud800"]'),
    "an escaped lone low surrogate": (BOARD_ORDER, f'["\\udfff", "open", null, "{ROW}"]'),
    "a surrogate pair cut short": (BOARD_ORDER, f'["a\\ud83d", "open", null, "{ROW}"]'),
    "arrays nested 5,000 deep": (TIMELINE_ORDER, "[" * 5000),
    "arrays nested and closed": (QUEUE_ORDER, "[" * 5000 + "]" * 5000),
    "an object": (QUEUE_ORDER, f'{{"at": "{AT}", "id": "{ROW}"}}'),
    "a number for text": (BOARD_ORDER, f'[1, "open", null, "{ROW}"]'),
    "a NUL": (BOARD_ORDER, f'["a\\u0000b", "open", null, "{ROW}"]'),
    "a text past its bound": (TIMELINE_ORDER, f'["{AT}", "{"x" * (TEXT_LIMIT + 1)}"]'),
    "too many values": (QUEUE_ORDER, f'["{AT}", "{ROW}", "{ROW}"]'),
    "a null where none may be": (TIMELINE_ORDER, f'[null, "{ROW}"]'),
    "an offset past -23:59": (
        QUEUE_ORDER,
        f'["9999-12-31T23:59:59.999999-23:59:59.999999", "{ROW}"]',
    ),
    "an offset past +23:59": (QUEUE_ORDER, f'["0001-01-01T00:00:00+23:59:30", "{ROW}"]'),
    "a time without a zone": (QUEUE_ORDER, f'["2030-01-01T10:00:00", "{ROW}"]'),
    "a UUID that is none": (QUEUE_ORDER, f'["{AT}", "not-a-uuid"]'),
}


@pytest.mark.parametrize(("keys", "json_text"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_keyset_cursor_is_a_400_naming_it(
    keys: Sequence[SortKey], json_text: str
) -> None:
    cursor = encoded(json_text)
    with pytest.raises(BadRequest, match="is not one this list gave") as refused:
        keyset_after(cursor, keys)
    assert cursor[:40] in str(refused.value)


@pytest.mark.parametrize("cursor", ["%", "\ud800", "\x00", "é" * 5000, "bnVsbA==", "WzFd"])
def test_a_cursor_that_is_no_base64_json_array_is_a_400(cursor: str) -> None:
    for keys in (QUEUE_ORDER, BOARD_ORDER, TIMELINE_ORDER):
        with pytest.raises(BadRequest, match="is not one this list gave"):
            keyset_after(cursor, keys)
    with pytest.raises(BadRequest, match="is not one this list gave"):
        uuid_after(cursor)


def test_a_text_at_its_bound_and_an_instant_past_the_calendar_are_taken() -> None:
    """Rows stored before the domain bounded times hold instants outside 1900..9999; a
    page ending at one names it, and its next page must still be read."""
    longest = "x" * TEXT_LIMIT
    assert keyset_after(encoded(f'["{AT}", "{longest}"]'), TIMELINE_ORDER) == [
        datetime(2024, 1, 1, tzinfo=UTC),
        longest,
    ]
    early = "0001-01-01T00:00:00+14:00"
    [after, _] = keyset_after(encoded(f'["{early}", "{ROW}"]'), QUEUE_ORDER) or []
    assert after == datetime.fromisoformat(early)
