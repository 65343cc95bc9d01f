"""Numbers and ids written as text are read as the API writes them, not as Python's
`int`, `Decimal` and `UUID` read them: those take any Unicode decimal digit (an
Arabic-Indic or a fullwidth five is 5), `_` between digits, surrounding spaces, a sign,
an exponent, `NaN` and `Infinity`; `UUID` takes braces, `urn:uuid:` and, among 32
characters, a `+` or `_` that makes it another id."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

import msgspec
import pytest

from domain import fields
from domain import validation as check
from domain.base import ValidationFailed

NOT_PLAIN_DECIMALS = (
    "5_000",
    "\u0665",  # Arabic-Indic five
    "\uff11\uff12",  # fullwidth 12
    "1\u0660",  # 1 and an Arabic-Indic zero
    "1e3",
    "1E+2",
    "0E+999999999999999999",
    "-0",
    "-0.00",
    "+3",
    " 7 ",
    "7\n",
    "007",
    "00.5",
    "1.",
    ".5",
    "1.2.3",
    "NaN",
    "Infinity",
    "0x10",
    "\xb2",  # superscript two: `str.isdigit` says it is a digit
    "",
)


@pytest.mark.parametrize("text", NOT_PLAIN_DECIMALS)
def test_an_amount_in_text_is_plain_decimal_digits(text: str) -> None:
    with pytest.raises(ValidationFailed, match="amount: must be plain decimal text") as refused:
        check.amount(text)
    assert repr(text[:40]) in str(refused.value)


@pytest.mark.parametrize("text", ["0", "0.5", "12.50", "7", "999999999999.9999", "0.0000"])
def test_an_amount_in_plain_decimal_digits_is_kept_as_written(text: str) -> None:
    assert str(check.amount(text)) == text


def test_an_amount_sent_as_a_number_is_kept_in_plain_form() -> None:
    """A JSON number reaches the domain as a `Decimal` read exactly as written (or an
    `int`): any number whose value is an amount is one, without sign or exponent."""
    assert str(check.amount(Decimal("1E+2"))) == "100"
    assert str(check.amount(Decimal("-0.0"))) == "0.0"
    assert str(check.amount(7)) == "7"
    for beyond in (Decimal("1E+12"), Decimal("NaN"), Decimal("-1"), Decimal("0.00001"), -1):
        with pytest.raises(ValidationFailed, match="amount"):
            check.amount(beyond)


@pytest.mark.parametrize("value", [True, None, 1.5, [], {"value": "1"}])
def test_an_amount_is_a_number_or_text(value: object) -> None:
    """A float is not exact; a bool is no number, though Python's `int` takes it."""
    with pytest.raises(ValidationFailed, match="amount: must be a number, or a string"):
        check.amount(value)


@pytest.mark.parametrize(
    "text",
    ["\u0665", "\uff15", "\xb2", "+3", "-0", "-1", " 7", "7 ", "5_000", "007", "00", "1e3",
     "1.0", "0x10", "", "9" * 5000],
)  # fmt: skip
def test_a_whole_number_is_ascii_digits_without_sign_or_leading_zero(text: str) -> None:
    with pytest.raises(ValidationFailed, match="after: must be") as refused:
        check.whole_number(text, "after")
    assert repr(text[:40]) in str(refused.value)


def test_a_whole_number_is_at_most_what_a_bigint_holds() -> None:
    most = fields.BIGINT
    assert [check.whole_number(text, "n") for text in ("0", "7", str(most))] == [0, 7, most]
    for beyond in (str(most + 1), str(10**30)):
        with pytest.raises(ValidationFailed, match=f"n: must be at most {most}, not"):
            check.whole_number(beyond, "n")


def digits(text: str, zero: int) -> str:
    return text.translate(str.maketrans("0123456789", "".join(map(chr, range(zero, zero + 10)))))


def test_an_id_in_text_is_read_as_a_body_reads_one() -> None:
    """`uuid_text` takes what msgspec takes in a body, and nothing Python's `UUID` takes
    besides: a `+` or an `_` among 32 characters named another id (`+fb5...` is 0fb5...)."""
    uid = uuid4()
    hyphenated = str(uid)
    taken = (hyphenated, hyphenated.upper(), uid.hex, uid.hex.upper())
    for text in taken:
        assert check.uuid_text(text, "id") == uid == msgspec.convert(text, UUID)
    refused = (
        digits(hyphenated, 0xFF10),
        digits(hyphenated, 0x0660),
        "{" + hyphenated + "}",
        "urn:uuid:" + hyphenated,
        "+" + uid.hex[1:],
        " " + uid.hex[1:],
        uid.hex[:4] + "_" + uid.hex[5:],
        hyphenated.replace("-", "", 1),
        hyphenated + "\n",
    )
    for text in refused:
        with pytest.raises(ValidationFailed, match="id: must be a UUID"):
            check.uuid_text(text, "id")
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(text, UUID)


NOT_INSTANTS = ("1e9", "0", "-0", "1700000000.5", "4e9", "1" * 30, "", "yesterday",
                "2024-01-01", "20240101T000000Z", "2024-01-01T00:00Z", "2024-01-01T00:00:00+01",
                "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:00:00+24:00",
                digits("2024-01-01T00:00:00Z", 0xFF10))  # fmt: skip
"""Unix timestamps, which the framework's lax reading of a query took (`?from=1e9` was
2001-09-09), and times RFC 3339 does not write (ISO 8601's other forms, a date alone,
an hour 24, an offset of 24 hours, fullwidth digits)."""


@pytest.mark.parametrize("text", NOT_INSTANTS)
def test_a_time_in_text_is_rfc_3339(text: str) -> None:
    with pytest.raises(ValidationFailed, match="from: must be an RFC 3339 time with a zone"):
        check.instant_text(text, "from")


def test_a_time_in_text_has_a_zone_and_is_read_as_a_body_reads_one() -> None:
    """Taken as msgspec takes an `Instant` in a body, at any instant; a time without a
    zone is refused as `rfc3339` refuses it."""
    for text in ("2024-01-01T00:00:00Z", "2024-01-01t00:00:00.25z", "2024-01-01T00:00:00+01:00",
                 "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-23:59"):  # fmt: skip
        assert check.instant_text(text, "as_of") == msgspec.convert(text, datetime, strict=True)
    with pytest.raises(ValidationFailed, match="as_of: must include a time zone"):
        check.instant_text("2024-01-01T00:00:00", "as_of")
