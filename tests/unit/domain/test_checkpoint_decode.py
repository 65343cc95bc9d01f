"""A checkpoint that does not decode is `msgspec.DecodeError`, whatever the bytes: every
reader (the Kafka topic, an auditor's file) catches that alone."""

from __future__ import annotations

import msgspec
import pytest

from domain import checkpoint
from domain.checkpoint import Checkpoint

SIGNED = Checkpoint(
    position=3, tree_size=3, chain_head="00" * 32, tree_head="11" * 32,
    signed_at="2025-01-01T00:00:00Z", public_key="22" * 32, signature="33" * 64,
)  # fmt: skip


def test_a_checkpoint_round_trips() -> None:
    assert checkpoint.decode(checkpoint.encode(SIGNED)) == SIGNED


@pytest.mark.parametrize(
    "data",
    [b"", b"null", b"\xff", checkpoint.encode(SIGNED).replace(b"33" * 64, b"\xff\xfe")],
    ids=["empty", "null", "not-json", "string-not-utf8"],
)
def test_what_is_no_checkpoint_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        checkpoint.decode(data)
