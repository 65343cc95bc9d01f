"""Normalisation rules: one spelling per email, phone, code and currency."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import validation as check
from domain.base import ValidationFailed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Ada@Example.COM ", "ada@example.com"),
        ("a.b+tag@sub.example.org", "a.b+tag@sub.example.org"),
        (None, None),
    ],
)
def test_email_is_normalised(raw: str | None, expected: str | None) -> None:
    assert check.email(raw) == expected


@pytest.mark.parametrize("raw", ["", "ada", "ada@", "@example.com", "ada@example", "a b@x.com"])
def test_invalid_email_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationFailed, match="email"):
        check.email(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("0049 (30) 123-4567", "+49301234567"),
        ("+1.555.123.4567", "+15551234567"),
        ("+1234567", "+1234567"),
        (None, None),
    ],
)
def test_phone_is_normalised_to_e164(raw: str | None, expected: str | None) -> None:
    assert check.phone(raw) == expected


@pytest.mark.parametrize(
    "raw", ["020 7946 0958", "+123456", "+1234567890123456", "+44 20 ABC", "", "++4412345678"]
)
def test_invalid_phone_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationFailed, match="phone"):
        check.phone(raw)


@pytest.mark.parametrize("raw", ["sales", " Support ", "key-accounts_2"])
def test_department_codes(raw: str) -> None:
    assert check.department(raw) == raw.strip().lower()


@pytest.mark.parametrize("raw", ["", "2nd-line", "sales team", "x" * 41])
def test_invalid_department_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationFailed, match="department"):
        check.department(raw)


def test_currency_is_upper_case_iso_code() -> None:
    assert check.currency(" eur ") == "EUR"
    with pytest.raises(ValidationFailed, match="currency"):
        check.currency("EURO")


@pytest.mark.parametrize("raw", ["-1", "NaN", "Infinity", "twelve"])
def test_invalid_amount_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationFailed, match="amount"):
        check.amount(raw)


def test_amount_keeps_its_precision() -> None:
    assert str(check.amount("12.50")) == "12.50"
    assert check.amount(3) == Decimal(3)


def test_scores_reject_bools_and_out_of_range() -> None:
    assert check.score(5, 1, 5) == 5
    for bad in (0, 6, True):
        with pytest.raises(ValidationFailed, match="score"):
            check.score(bad, 1, 5)


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValidationFailed, match="due_at"):
        check.aware(datetime(2024, 1, 1), "due_at")


def test_blank_optional_text_means_absent() -> None:
    assert check.optional_text("   ", "note") is None
    with pytest.raises(ValidationFailed, match="longer than 3"):
        check.text("abcd", "note", 3)


@pytest.mark.parametrize("raw", ["1e12", "1e999999", "0.00001"])
def test_amounts_stay_within_the_bounds(raw: str) -> None:
    with pytest.raises(ValidationFailed, match="amount"):
        check.amount(raw)
    largest = check.MAX_AMOUNT - Decimal(1).scaleb(-check.AMOUNT_PLACES)
    assert check.amount(largest) == largest


def test_text_holds_no_control_character_but_free_text_keeps_newline_and_tab() -> None:
    for bad in ("a\x00b", "red \x1b[31m", "bell\x07"):
        with pytest.raises(ValidationFailed, match="control"):
            check.text(bad, "note", multiline=True)
    with pytest.raises(ValidationFailed, match="control"):
        check.email("a\x00@x.io")
    kept = "tab\tand \U0001d518 newline\n ok"  # an astral-plane letter
    assert check.text(kept, "note", multiline=True) == kept
    with pytest.raises(ValidationFailed, match="control"):
        check.text(kept, "name")  # single-line text refuses them too


def test_text_in_the_form_of_a_sealed_value_is_refused() -> None:
    """It would be taken for one: counted by its envelope, passed through unopened."""
    for bad in ("enc:v1:AAAA", "  enc:v1:", "enc:v1:" + "A" * 100):
        with pytest.raises(ValidationFailed, match="must not begin with 'enc:v1:'"):
            check.text(bad, "content", multiline=True)
    assert check.text("about enc:v1: values", "content") == "about enc:v1: values"


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (check.email, "enc:v1:AAAA@y.de"),
        (check.email, " ENC:V1:AAAA@y.de"),  # lower-cased into the form
        (check.tag, "enc:v1:aaaa"),
    ],
)
def test_no_kind_of_text_may_take_the_form_of_a_sealed_value(
    kind: Callable[[str, str], str | None], raw: str
) -> None:
    """The red team's `enc:v1:AAAA@y.de` was a valid e-mail address: one rule for every
    kind of text, whatever else its kind allows."""
    with pytest.raises(ValidationFailed, match="field: must not begin with 'enc:v1:'"):
        kind(raw, "field")
    assert check.email("x.enc:v1:@y.de") == "x.enc:v1:@y.de"


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (check.text, " [masked] "),
        (lambda raw, field: check.text(raw, field, multiline=True), "[erased]"),
        (check.path_id, "[masked]"),
    ],
)
def test_no_text_may_be_a_marker_standing_for_a_hidden_or_erased_value(
    kind: Callable[[str, str], str | None], raw: str
) -> None:
    """The red team stored an address "[erased]" and a message "[masked]": an auditor
    read them as an erasure and as text hidden from their role, in the API and the
    console alike."""
    with pytest.raises(ValidationFailed, match=r"^field: '\[\w+\]' stands for a hidden"):
        kind(raw, "field")
    assert check.text("[masked] by whom?", "note") == "[masked] by whom?"


@pytest.mark.parametrize(
    "raw",
    [
        *("[erased]\u200b", "\u2060[masked]", "[masked]\ufeff", "[eras\u200ded]", "[ERASED]"),
        *("\uff3bmasked\uff3d", "\uff3bERASED\uff3d", "[erased\ufe48"),  # fullwidth `]`s
        *("\u202e[deksam]", "\u202e[desare]"),  # a right-to-left override shows `[masked]`
    ],
)
def test_a_text_reading_as_a_marker_is_one(raw: str) -> None:
    """An invisible character or another case made the markers pass (red team, second
    round), and brackets with no ASCII `]` or a text shown backwards (red team s33):
    what a person reads is what counts."""
    for multiline in (False, True):
        with pytest.raises(ValidationFailed, match="stands for a hidden or erased value"):
            check.text(raw, "note", multiline=multiline)


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=0, max_size=104))
def test_an_id_in_plain_letters_skips_only_checks_it_would_pass(raw: str) -> None:
    """`path_id` returns a plain id (letters, digits, `_`, `-`, as an id it made) before
    its checks: exactly the ids they would return unchanged."""
    try:
        slow = check._PATH_SEGMENT.match(check.text(raw, "id", 100)) and check.text(raw, "id", 100)
    except ValidationFailed:
        slow = None
    plain = check._PLAIN_ID.fullmatch(raw) is not None
    if plain:
        assert slow == raw
        assert check.path_id(raw, "id") == raw


@pytest.mark.parametrize("raw", ["a/b", "/", "a\\b", "50%", "a%2Fb", ".", " .. "])
def test_an_id_named_in_a_url_path_holds_nothing_a_segment_cannot_carry(raw: str) -> None:
    """`a/b` was recorded as an order id, then `PATCH .../orders/a%2Fb` was a 404."""
    with pytest.raises(ValidationFailed, match=r"^order_id: must be an opaque id"):
        check.path_id(raw, "order_id")


@pytest.mark.parametrize(
    "raw",
    ["<frida.f1@private.example>", "frida@example.com", "Frida Fischer", "a\u00a0b"],
)
def test_an_id_named_in_a_url_path_is_opaque_never_an_address_or_a_name(raw: str) -> None:
    """A message's id was its e-mail's Message-ID, an order's a name: stored in
    plaintext, they were an analyst's to read and outlived the customer's erasure (red
    team). No `@`, no white space: an opaque token."""
    with pytest.raises(ValidationFailed, match=r"^message_id: must be an opaque id"):
        check.path_id(raw, "message_id")


def test_an_id_named_in_a_url_path_may_hold_what_percent_encoding_carries() -> None:
    for kept in ("SO-2024-001", "#1234", "a?c", "...", ".x", "Bestellung-ä"):
        assert check.path_id(kept, "order_id") == kept
    with pytest.raises(ValidationFailed, match="must not begin with 'enc:v1:'"):
        check.path_id("enc:v1:x", "message_id")


def test_times_span_every_offset_and_the_whole_calendar() -> None:
    for edge in (check.EARLIEST_INSTANT, check.LATEST_INSTANT):
        assert check.aware(edge, "due_at") == edge
    beyond = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59, seconds=1)))
    with pytest.raises(ValidationFailed, match="offset"):
        check.aware(beyond, "due_at")


def test_a_time_reported_as_past_may_not_lie_in_the_future() -> None:
    """A message `sent_at` 9999 stood last in the support queue and froze a customer's
    last contact at 9999 for good (red team): a clock ahead by a few minutes passes."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    ahead = now + timedelta(minutes=4)
    assert check.happened(ahead, now, "sent_at") == ahead
    assert check.happened(datetime(1900, 1, 1, tzinfo=UTC), now, "sent_at").year == 1900
    for late in (now + timedelta(minutes=6), datetime(9999, 12, 31, tzinfo=UTC)):
        with pytest.raises(ValidationFailed, match=r"^sent_at: must not lie in the future"):
            check.happened(late, now, "sent_at")
