"""Checks and normalisations shared by the aggregates (email, phone, codes, free text).

Each function returns the normalised value or raises `ValidationFailed` naming the
field, so a decision method reads as a list of checks. Pure: no I/O, no clock.

The bounds below are the one place saying what the domain accepts; the checks read
them, and so does the test that proves every accepted value reaches every read model
on both stores. Today they are what every store can hold: any RFC 3339 time, free
text without NUL (PostgreSQL text cannot hold one), amounts a read model's totals can
sum exactly. Narrower business limits belong here too, so that test follows them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from domain.base import ValidationFailed

MAX_UTC_OFFSET = timedelta(hours=23, minutes=59)
"""The widest zone offset a time may carry (what RFC 3339 text can write)."""
EARLIEST_INSTANT = datetime(1, 1, 1, tzinfo=timezone(MAX_UTC_OFFSET))
LATEST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(-MAX_UTC_OFFSET))
"""The first and last instants a time may name (compared as instants, not as text)."""
FORBIDDEN_IN_TEXT = "\x00"
"""Characters no free text (names, messages, notes...) may contain."""
MAX_AMOUNT = Decimal("1e18")
"""Amounts are below this (exclusive) ..."""
AMOUNT_PLACES = 8
"""... with at most this many decimal places."""
_AMOUNT_STEP = Decimal(1).scaleb(-AMOUNT_PLACES)
_FORBIDDEN = re.compile(f"[{re.escape(FORBIDDEN_IN_TEXT)}]")

DEPARTMENT_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_:.-]{0,49}$")
CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_JUNK = re.compile(r"[\s().-]")
_PHONE_DIGITS = re.compile(r"^\d{7,15}$")


def department(value: str, field: str = "department") -> str:
    """A department is a free lowercase code so new teams need no schema change."""
    return _match(DEPARTMENT_PATTERN, value.strip().lower(), field, "not a department code")


def code(value: str, field: str) -> str:
    """A lowercase machine code (consent name, order status)."""
    return _match(CODE_PATTERN, value.strip().lower(), field, "not a lowercase code")


def tag(value: str, field: str = "tag") -> str:
    """Tags compare case-insensitively, so they are stored lower-case."""
    return _match(TAG_PATTERN, value.strip().lower(), field, "not a valid tag")


def currency(value: str, field: str = "currency") -> str:
    """ISO 4217 alphabetic code, upper-case."""
    return _match(CURRENCY_PATTERN, value.strip().upper(), field, "not an ISO 4217 code")


def email(value: str | None, field: str = "email") -> str | None:
    """Lower-cased so that two spellings of one address are one address."""
    if value is None:
        return None
    normalised = value.strip().lower()
    if len(normalised) > 254 or not EMAIL_PATTERN.fullmatch(normalised):
        raise ValidationFailed(field, "not a valid email address")
    return _allowed(normalised, field)


def phone(value: str | None, field: str = "phone") -> str | None:
    """E.164-like `+<digits>`: accepts spaces, dashes, dots and parentheses, `+` or `00`."""
    if value is None:
        return None
    compact = _PHONE_JUNK.sub("", value.strip())
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    else:
        raise ValidationFailed(field, "needs an international prefix (+ or 00)")
    if not _PHONE_DIGITS.fullmatch(digits):
        raise ValidationFailed(field, "needs 7 to 15 digits")
    return "+" + digits


def text(value: str, field: str, max_length: int = 200) -> str:
    """Required free text: stripped, not empty, bounded, no forbidden characters."""
    stripped = value.strip()
    if not stripped:
        raise ValidationFailed(field, "must not be empty")
    if len(stripped) > max_length:
        raise ValidationFailed(field, f"longer than {max_length} characters")
    return _allowed(stripped, field)


def _allowed(value: str, field: str) -> str:
    if _FORBIDDEN.search(value):
        raise ValidationFailed(field, "contains a character text may not hold (NUL)")
    return value


def optional_text(value: str | None, field: str, max_length: int = 200) -> str | None:
    """Optional free text: blank means absent."""
    if value is None or not value.strip():
        return None
    return text(value, field, max_length)


def one_of(value: str, allowed: frozenset[str], field: str) -> str:
    if value not in allowed:
        raise ValidationFailed(field, f"must be one of {', '.join(sorted(allowed))}")
    return value


def score(value: int, low: int, high: int, field: str = "score") -> int:
    """Survey and evaluation scores: integers (not bools) within a closed range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(field, f"must be an integer from {low} to {high}")
    return value


def aware(value: datetime, field: str) -> datetime:
    """Times must carry a zone (naive times are ambiguous across offices) of at most
    `MAX_UTC_OFFSET`, and lie between `EARLIEST_INSTANT` and `LATEST_INSTANT`."""
    offset = value.utcoffset()
    if offset is None:
        raise ValidationFailed(field, "must include a time zone")
    if abs(offset) > MAX_UTC_OFFSET:
        raise ValidationFailed(field, "has a zone offset beyond ±23:59")
    if not EARLIEST_INSTANT <= value <= LATEST_INSTANT:
        raise ValidationFailed(field, f"must lie from {EARLIEST_INSTANT} to {LATEST_INSTANT}")
    return value


def amount(value: Decimal | int | str, field: str = "amount") -> Decimal:
    """Money as a finite, non-negative Decimal (refunds are a status, not a sign)."""
    try:
        result = Decimal(value)
    except ArithmeticError as error:
        raise ValidationFailed(field, "not a decimal number") from error
    if not result.is_finite() or not 0 <= result < MAX_AMOUNT:
        raise ValidationFailed(field, f"must be a finite amount from 0 to below {MAX_AMOUNT}")
    if result != result.quantize(_AMOUNT_STEP):  # 12.50000000000 is fine, 1e-9 is not
        raise ValidationFailed(field, f"has more than {AMOUNT_PLACES} decimal places")
    return result


def _match(pattern: re.Pattern[str], value: str, field: str, message: str) -> str:
    if not pattern.fullmatch(value):
        raise ValidationFailed(field, message)
    return value
