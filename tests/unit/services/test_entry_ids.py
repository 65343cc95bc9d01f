"""A new conversation entry's `message_id` (`conversation_commands.new_entry_id`) is what
`uuid.uuid4().hex` gave: 32 hexadecimal digits of 128 random bits with a UUID 4's
version and variant, whatever bytes `os.urandom` returns."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services import conversation_commands as cc
from services.access.rules import Principal, Role

AGENT = Principal(name="ann", department="sales", role=Role.AGENT)


@given(st.binary(min_size=16, max_size=16))
def test_an_entry_id_is_the_uuid4_of_its_random_bytes(random: bytes) -> None:
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr("services.conversation_commands.os.urandom", lambda size: random[:size])
        made = cc.new_entry_id()
    assert made == uuid.UUID(bytes=random, version=4).hex


def test_logged_entries_get_new_uuid4_ids() -> None:
    ids = [
        cc.LogMessage(direction="inbound", author="a", content="c").with_defaults(AGENT).message_id
        for _ in range(200)
    ] + [cc.AddNote(content="c").with_defaults(AGENT).message_id for _ in range(200)]
    assert len(set(ids)) == len(ids)
    for made in ids:
        assert isinstance(made, str)
        read = uuid.UUID(hex=made)
        assert (read.hex, read.version, read.variant) == (made, 4, uuid.RFC_4122)


def test_a_named_entry_id_is_kept() -> None:
    named = cc.LogMessage(direction="inbound", author="a", content="c", message_id="m-1")
    assert named.with_defaults(AGENT).message_id == "m-1"
