"""A request id a client gives (X-Request-Id) becomes its events' `correlation_id`, kept
for good where no erasure reaches: only an opaque id is taken (`validation.request_id`),
a UUID or 16-64 hex digits, never text a person could be named in, nor decimal digits
alone (a card's or a phone's number)."""

from __future__ import annotations

import pytest

from domain import validation as check
from domain.base import ValidationFailed

UUID = "0b7c3b9e-0d6f-4f7e-9a53-2f0c6d7e8a91"
TAKEN = (
    UUID,
    UUID.upper(),
    "114fe310-ff13-475d-ae75-897a7058b95d",
    "866590b5bc694bb6b0a0a2d5285b0b0d",  # this API's own ids: 32 hex digits (fixed: pytest-xdist
    # workers must collect the same parameters)
    "0123456789abcdef",  # 16, the fewest
    "ABCDEF0123456789" * 4,  # 64, the most (a SHA-256 in hex)
    "4bf92f3577b34da6a3ce929d0e0e4736",  # a W3C / OpenTelemetry trace id
)
REFUSED = (
    "grace.hopper@example.com",
    "signup-grace.hopper@example.com",
    "grace_hopper_1906",  # letters past f: a name
    "GraceHopperExampleCom",
    "grace hopper 0123456789abcdef",
    "0123456789abcdef.0123",
    "0123456789abcdef@x",
    "\x9b2J\x9b31mforged\x85line",  # C1: CSI, NEL
    "0123456789abcdef\x9b",
    "0123456789abcdef\x85",
    "\x1b[31m0123456789abcdef",  # C0: ESC
    "0123456789abcdef\x00",
    "0123456789abcdef\t",
    "0123456789abcdef\r",
    "0123456789abcdef\n",  # `$` matches before a final newline: fullmatch does not
    "0123456789abcdef\x7f",
    "\u202e0123456789abcdef",  # bidi: right-to-left override
    "0123456789abcdef\u2066",  # bidi: left-to-right isolate
    "\u200b0123456789abcdef",  # zero-width space
    "\uff10" * 16,  # fullwidth digits
    "\u0660" * 16,  # Arabic-Indic digits
    "caf\u00e9" + "0" * 16,
    "0123456789abcdef" * 625,  # 10 kB
    "4111111111111111",  # decimal digits alone: a card's number
    "00491701234567890",  # a phone's
    "00491701-2345-6789-0000-000000000000",  # a phone's, padded into a UUID's shape
    "41111111-1111-1111-1111-111111111111",  # a card's, likewise
    "1" * 64,
    "a" * 65,
    "a" * 15,
    "",
    " ",
    "{" + UUID + "}",
    "urn:uuid:" + UUID,
    UUID.replace("-", "", 1),  # a UUID's hyphens all or none
    " " + UUID,
    UUID + " ",
)


@pytest.mark.parametrize("value", TAKEN)
def test_an_opaque_id_is_taken_as_sent(value: str) -> None:
    assert check.request_id(value) == value


@pytest.mark.parametrize("value", REFUSED, ids=lambda v: repr(v[:24]))
def test_anything_else_is_refused_without_repeating_it(value: str) -> None:
    with pytest.raises(ValidationFailed, match="X-Request-Id: must be a UUID or 16-64 hex") as no:
        check.request_id(value)
    if value.strip():
        assert value not in str(no.value)
