"""Whole numbers, times and ids a request carries as text (integer and time query
parameters, a customer list's cursor) are read as the API writes them
(`domain.validation`), never as Python's `int` or `UUID`, or the framework's
JSON-number reading, would: `?after=1e3` was 1000, `?min_position=-0` was 0,
`?from=1e9` was 2001-09-09, a cursor in fullwidth digits named a customer."""

from __future__ import annotations

from uuid import uuid4

import pytest
from litestar.exceptions import NotFoundException

from domain.base import ValidationFailed
from domain.validation import uuid_text
from services.api.cursors import uuid_after
from services.api.http_errors import BadQuery, BadRequest
from services.api.request_guard import QueryRule, refuse_unwritten_ids


def integer_rule() -> QueryRule:
    """A route taking `after` and `limit`, integers, and `tag`, text."""
    return QueryRule(
        frozenset({"after", "limit", "tag"}), frozenset(), frozenset({"after", "limit"})
    )


@pytest.mark.parametrize(
    "value",
    ["1e3", "1E3", "-0", "-0.0", "1.0", "10e-1", "0e5", "+1", "007", " 7", "5_000", "\u0665",
     "\xb2", "", "9223372036854775808"],
)  # fmt: skip
def test_an_integer_query_parameter_is_a_whole_number_as_written(value: str) -> None:
    """The framework reads `1e3`, `1.0`, `-0` and `10e-1` as integers (JSON numbers)."""
    with pytest.raises(BadQuery) as refused:
        integer_rule().check([("tag", "1e3"), ("after", value)])
    assert refused.value.field == "after"
    assert str(refused.value).startswith("query parameter 'after' must be")
    assert repr(value) in str(refused.value)


def test_an_integer_query_parameter_as_written_passes_and_text_is_not_one() -> None:
    rule = integer_rule()
    rule.check([("after", "0"), ("limit", "500"), ("tag", "1e3")])
    rule.check([("after", str(2**63 - 1))])


def time_rule() -> QueryRule:
    """A route taking `from` and `to`, times, and `limit`, an integer."""
    names = frozenset({"from", "to", "limit"})
    return QueryRule(names, frozenset(), frozenset({"limit"}), frozenset({"from", "to"}))


@pytest.mark.parametrize("value", ["1e9", "-0", "0", "1700000000.5", "2024-01-01", ""])
def test_a_time_query_parameter_is_an_rfc_3339_time_with_a_zone(value: str) -> None:
    """The framework read a number as a Unix timestamp: `?from=1e9` was 2001-09-09."""
    with pytest.raises(BadQuery) as refused:
        time_rule().check([("from", "2024-01-01T00:00:00Z"), ("to", value)])
    assert refused.value.field == "to"
    assert str(refused.value).startswith("query parameter 'to' must be an RFC 3339 time")
    with pytest.raises(BadQuery, match="'to' must include a time zone"):
        time_rule().check([("to", "2024-01-01T00:00:00")])
    time_rule().check([("from", "2024-01-01T00:00:00+01:00"), ("limit", "1")])


def test_a_customer_list_cursor_names_an_id_written_as_ids_are() -> None:
    """Python's `UUID` read fullwidth digits and braces, and `+` among 32 characters as
    another id."""
    uid = uuid4()
    assert uuid_after(uid.hex.upper()) == uid
    fullwidth = str(uid).translate(
        str.maketrans("0123456789", "".join(map(chr, range(0xFF10, 0xFF1A))))
    )
    for cursor in (fullwidth, "{" + str(uid) + "}", "+" + uid.hex[1:], "urn:uuid:" + str(uid)):
        with pytest.raises(BadRequest, match="is not one this list gave"):
            uuid_after(cursor)


def test_an_id_in_a_path_is_written_as_a_body_writes_one() -> None:
    """The guard matches a path's id against `UUID_TEXT` (the framework makes the
    `UUID`): it takes what `uuid_text` takes and refuses, as a 404, what it refuses."""
    uid = uuid4()
    at = (-2,)  # /v1/conversations/{id}/messages
    for text in (str(uid), str(uid).upper(), uid.hex, uid.hex.upper()):
        refuse_unwritten_ids(f"/v1/conversations/{text}/messages", at)
        refuse_unwritten_ids(f"//v1/conversations/{text}/messages/", at)  # as routed
    fullwidth = str(uid).translate(
        str.maketrans("0123456789", "".join(map(chr, range(0xFF10, 0xFF1A))))
    )
    refused = (fullwidth, "{" + str(uid) + "}", "urn:uuid:" + str(uid), "+" + uid.hex[1:],
               uid.hex[:4] + "_" + uid.hex[5:], str(uid).replace("-", "", 1), str(uid) + "\n",
               "messages")  # fmt: skip
    for text in refused:
        with pytest.raises(ValidationFailed):
            uuid_text(text, "id")
        with pytest.raises(NotFoundException):
            refuse_unwritten_ids(f"/v1/conversations/{text}/messages", at)
