"""The signer fed by the relay, with a hand-written log: it signs only up to the relay's
head, refuses when the store's chain differs there, and remembers the head beside its
key so that the refusal outlives a restart (`docs/audit.md`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.relay_position import PublishedChain
from domain.chain_walk import ChainWalk
from domain.hashchain import GENESIS, chain_rows
from services.audit_keys import load_or_create
from services.audit_published import RememberedHead, check_walk, head_path
from services.checkpointer import Checkpointer, CheckpointRefused
from tests.unit.services.test_signer_status import FakeLog

CANONICALS = [b"first", b"second", b"third"]
LINKS = chain_rows(0, GENESIS, [1, 2, 3], CANONICALS)


class LinkedLog(FakeLog):
    """`FakeLog` with the one link read the remembered head makes."""

    def __init__(self, links: list[tuple[int, int, bytes]]) -> None:
        super().__init__()
        self.links = links

    def link_before(self, position: int) -> tuple[int, bytes] | None:
        before = [(at, chain) for at, _, chain in self.links if at < position]
        return before[-1] if before else None


def _walked(upto: int) -> ChainWalk:
    walk = ChainWalk()
    entries = list(zip([1, 2, 3], CANONICALS, strict=True))[:upto]
    assert walk.feed(entries, LINKS[:upto]) is None
    return walk


def test_the_walk_must_end_at_the_relays_position_with_its_chain() -> None:
    check_walk(_walked(3), 0, 3, LINKS[2][2])
    with pytest.raises(CheckpointRefused, match="edited before position 3"):
        check_walk(_walked(3), 0, 3, b"\x01" * 32)
    with pytest.raises(CheckpointRefused, match="deleted at position 3"):
        check_walk(_walked(2), 0, 3, LINKS[2][2])


def test_due_counts_what_the_relay_published_not_what_is_stored(tmp_path: Path) -> None:
    log = FakeLog()
    log.head = 100
    published = PublishedChain(lambda position: None)
    signer = Checkpointer(
        log, load_or_create(tmp_path / "k"), every_events=10, every_seconds=60,  # type: ignore[arg-type]
        published=published,
    )  # fmt: skip
    published.start(7)
    with pytest.raises(CheckpointRefused, match="no chain link at its position 7"):
        signer.due()
    published.start(0)
    assert not signer.due()
    published.published(3, b"\x00" * 32)
    assert signer.due()  # the first checkpoint: anything published


def test_the_remembered_head_keeps_refusing_after_a_restart(tmp_path: Path) -> None:
    key = load_or_create(tmp_path / "k")
    log = LinkedLog(LINKS)
    remembered = RememberedHead(key)
    remembered.remember((0, GENESIS))  # nothing published: nothing written
    assert not head_path(key).exists()
    remembered.remember((2, LINKS[1][2]))
    remembered.check(log)  # type: ignore[arg-type]
    log.links = chain_rows(0, GENESIS, [1, 2, 3], [b"forged", *CANONICALS[1:]])
    restarted = RememberedHead(key)  # a new process: what the file says
    with pytest.raises(CheckpointRefused, match="edited before position 2"):
        restarted.check(log)  # type: ignore[arg-type]
    log.links = LINKS[:1]
    with pytest.raises(CheckpointRefused, match="deleted at position 2"):
        RememberedHead(key).check(log)  # type: ignore[arg-type]
    log.links = LINKS  # the store repaired
    RememberedHead(key).check(log)  # type: ignore[arg-type]
