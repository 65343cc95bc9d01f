"""Which id a request gets (`observability.chosen_request_id`): the client's X-Request-Id
when it is one opaque id, else a new one, never a refusal."""

from __future__ import annotations

import re

import pytest

from services.api.observability import REQUEST_ID, chosen_request_id, request_id_of

OURS = re.compile(r"[0-9a-f]{32}")
SENT = "0b7c3b9e-0d6f-4f7e-9a53-2f0c6d7e8a91"


def test_one_opaque_id_is_the_requests_id() -> None:
    assert chosen_request_id([(b"accept", b"*/*"), (b"x-request-id", SENT.encode())]) == SENT


@pytest.mark.parametrize(
    "sent",
    [
        b"grace.hopper@example.com",
        "\x9b2J\x9b31mforged\x85line".encode("latin-1"),
        "\u202e0123456789abcdef".encode(),  # UTF-8 bytes, as a client sends them
        b"0123456789abcdef" * 640,
        b"",
    ],
)
def test_anything_else_gets_a_new_id(sent: bytes) -> None:
    chosen = chosen_request_id([(b"x-request-id", sent)])
    assert OURS.fullmatch(chosen), chosen
    assert chosen.encode() not in sent


def test_two_lines_get_a_new_id_and_none_a_new_one_each_time() -> None:
    two = chosen_request_id([(b"x-request-id", SENT.encode()), (b"x-request-id", b"0" * 32)])
    assert OURS.fullmatch(two)
    assert two not in (SENT, "0" * 32)
    assert chosen_request_id([]) != chosen_request_id([])


def test_a_scope_names_the_id_chosen_for_it() -> None:
    assert request_id_of({"state": {REQUEST_ID: SENT}}) == SENT
    assert OURS.fullmatch(request_id_of({}))
