"""The signer fed by the relay, with a hand-written log: it signs only up to the relay's
head, refuses when the store's chain differs there, and remembers the head beside its
key so that the refusal outlives a restart (`docs/audit.md`)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import psycopg
import pytest

from consumers.relay_position import PublishedChain
from domain.chain_walk import ChainWalk
from domain.checkpoint import Checkpoint
from domain.hashchain import GENESIS, chain_rows
from services.audit_keys import SigningKey, load_or_create
from services.audit_published import (
    RememberedHead,
    adopt_head,
    check_walk,
    checked_anchor,
    head_path,
    read_head,
    remembering,
)
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
    remembered.remember(log, (0, GENESIS))  # type: ignore[arg-type] # nothing published
    assert not head_path(key).exists()
    remembered.remember(log, (2, LINKS[1][2]))  # type: ignore[arg-type]
    remembered.check(log)  # type: ignore[arg-type]
    log.links = _forged()
    restarted = RememberedHead(key)  # a new process: what the file says
    with pytest.raises(CheckpointRefused, match="edited before position 2"):
        restarted.check(log)  # type: ignore[arg-type]
    log.links = LINKS[:1]
    with pytest.raises(CheckpointRefused, match="deleted at position 2"):
        RememberedHead(key).check(log)  # type: ignore[arg-type]
    log.links = LINKS  # the store repaired
    RememberedHead(key).check(log)  # type: ignore[arg-type]


def _forged() -> list[tuple[int, int, bytes]]:
    """The store with event 2 rewritten and relinked (event 1, the store's origin, kept)."""
    return chain_rows(0, GENESIS, [1, 2, 3], [CANONICALS[0], b"forged", CANONICALS[2]])


def _genuine_file(tmp_path: Path) -> tuple[SigningKey, LinkedLog, bytes]:
    """A key whose `.published` holds the genuine head at 2; the store now rewritten."""
    key = load_or_create(tmp_path / "k")
    log = LinkedLog(LINKS)
    RememberedHead(key).remember(log, (2, LINKS[1][2]))  # type: ignore[arg-type]
    written = head_path(key).read_bytes()
    log.links = _forged()
    return key, log, written


def test_a_head_the_store_contradicts_is_never_written_over(tmp_path: Path) -> None:
    """Review F1: every write checks first; the relay's chain, refused, has no head
    from then on, and an unreadable store writes nothing either."""
    key, log, written = _genuine_file(tmp_path)
    with pytest.raises(CheckpointRefused, match="edited before position 2"):
        RememberedHead(key).remember(log, (3, _forged()[2][2]))  # type: ignore[arg-type]
    assert head_path(key).read_bytes() == written
    # a relay anchored on the store's (rewritten) link, as before the anchor was checked
    published = PublishedChain(
        lambda position: _forged()[position - 1][2],
        remembering(key, log),  # type: ignore[arg-type]
    )
    published.start(2)
    published.published(3, _forged()[2][2])
    assert published.head is None
    assert published.refused is not None
    assert "edited before position 2" in published.refused
    assert head_path(key).read_bytes() == written
    published.published(3, LINKS[2][2])  # refused for the run
    assert published.head is None
    down = psycopg.OperationalError("down")
    log.link_before = lambda position: (_ for _ in ()).throw(down)  # type: ignore[method-assign]
    with pytest.raises(psycopg.OperationalError):  # the store out of reach: the relay retries
        PublishedChain(lambda position: None, remembering(key, log)).published(3, b"")  # type: ignore[arg-type]
    assert head_path(key).read_bytes() == written


def test_the_relay_remembers_each_head_before_it_is_the_signers(tmp_path: Path) -> None:
    """Review 3, F1: the relay's thread keeps the file up with each acknowledged page,
    whatever holds the signer's thread (a lock on the checkpoints table)."""
    key = load_or_create(tmp_path / "k")
    log = LinkedLog(LINKS)
    published = PublishedChain(lambda position: None, remembering(key, log))  # type: ignore[arg-type]
    published.start(0)
    for position in (1, 3):
        published.published(position, LINKS[position - 1][2])
        kept = read_head(head_path(key))
        assert kept is not None
        assert (kept.position, kept.chain) == (position, LINKS[position - 1][2].hex())
        assert published.head == (position, LINKS[position - 1][2])


def test_a_relay_anchored_on_a_contradicted_head_gets_none_and_the_signer_refuses(
    tmp_path: Path,
) -> None:
    """Review F1: start, stop, start over a rewritten store keeps refusing."""
    key, log, written = _genuine_file(tmp_path)
    for _run in range(2):
        published = PublishedChain(checked_anchor(key, lambda: nullcontext(log)))  # type: ignore[arg-type]
        assert published.start(2) == (2, None)
        assert published.head is None
        assert published.refused is not None
        assert "edited before position 2" in published.refused
        signer = Checkpointer(
            log,  # type: ignore[arg-type]
            key,
            every_events=1,
            every_seconds=1,
            published=published,
        )
        with pytest.raises(CheckpointRefused, match="no chain head to sign with"):
            signer.due()
        assert head_path(key).read_bytes() == written
    log.links = LINKS  # the store repaired: the next start anchors on its link
    published = PublishedChain(checked_anchor(key, lambda: nullcontext(log)))  # type: ignore[arg-type]
    assert published.start(2) == (2, LINKS[1][2])
    assert published.refused is None


def test_a_head_of_another_store_is_refused_as_such_and_adopt_replaces_it(
    tmp_path: Path,
) -> None:
    """Review F2: the file names its store (the chain link at position 1)."""
    key = load_or_create(tmp_path / "k")
    log = LinkedLog(LINKS)
    RememberedHead(key).remember(log, (3, LINKS[2][2]))  # type: ignore[arg-type]
    kept = read_head(head_path(key))
    assert kept is not None
    assert kept.origin == LINKS[0][2].hex()
    other = chain_rows(0, GENESIS, [1, 2, 3, 4], [b"other", b"store", b"with", b"more"])
    log.links = other
    with pytest.raises(CheckpointRefused, match="the remembered head is another store's"):
        RememberedHead(key).check(log)  # type: ignore[arg-type]
    log.links = []
    with pytest.raises(CheckpointRefused, match="holds no event at position 1"):
        RememberedHead(key).check(log)  # type: ignore[arg-type]
    log.links = other
    adopted = Checkpoint(
        position=4, tree_size=4, chain_head=other[3][2].hex(), tree_head="",
        signed_at="2026-01-01T00:00:00+00:00", public_key="", signature="",
    )  # fmt: skip
    head = adopt_head(log, key, adopted)  # type: ignore[arg-type]
    assert head is not None
    assert (head.position, head.origin) == (4, other[0][2].hex())
    RememberedHead(key).check(log)  # type: ignore[arg-type]
    assert adopt_head(log, key, adopted) is None  # type: ignore[arg-type] # this store's now


@pytest.mark.parametrize(
    ("links", "reads"),
    [(LINKS[:2], "deleted at position 3"), ([*LINKS[:2], (3, 2, b"\x02" * 32)], "edited")],
    ids=["deleted", "edited"],
)
def test_adopt_replaces_no_head_this_store_contradicts(
    tmp_path: Path, links: list[tuple[int, int, bytes]], reads: str
) -> None:
    """Red team: the published tail deleted (which reads as a restore from an older
    backup) or rewritten after the newest checkpoint: the checkpoints vouch for none of
    it, so `--adopt` must not trade the file's evidence for them."""
    key = load_or_create(tmp_path / "k")
    log = LinkedLog(LINKS)
    RememberedHead(key).remember(log, (3, LINKS[2][2]))  # type: ignore[arg-type]
    kept = head_path(key).read_bytes()
    log.links = links
    adopted = Checkpoint(
        position=1, tree_size=1, chain_head=LINKS[0][2].hex(), tree_head="",
        signed_at="2026-01-01T00:00:00+00:00", public_key="", signature="",
    )  # fmt: skip
    with pytest.raises(CheckpointRefused, match=f"{reads}.*--adopt does not replace this"):
        adopt_head(log, key, adopted)  # type: ignore[arg-type]
    assert head_path(key).read_bytes() == kept


def test_a_file_without_origin_is_still_read_and_gains_one(tmp_path: Path) -> None:
    key = load_or_create(tmp_path / "k")
    head_path(key).write_text(f'{{"position":2,"chain":"{LINKS[1][2].hex()}"}}')
    log = LinkedLog(LINKS)
    remembered = RememberedHead(key)
    remembered.remember(log, (3, LINKS[2][2]))  # type: ignore[arg-type]
    kept = read_head(head_path(key))
    assert kept is not None
    assert (kept.position, kept.origin) == (3, LINKS[0][2].hex())


def test_a_relay_behind_the_store_for_longer_than_the_limit_is_trouble() -> None:
    """Review F3: what the relay has not published is not signed; say so."""
    now = [0.0]
    log = LinkedLog(LINKS)
    log.head = 3
    published = PublishedChain(lambda position: None)
    published.start(0)
    published.published(1, LINKS[0][2])
    signer = Checkpointer(
        log, load_or_create(Path("/nonexistent/k")), every_events=1, every_seconds=1,  # type: ignore[arg-type]
        published=published, lag_limit_s=33, monotonic=lambda: now[0],
    )  # fmt: skip
    assert signer._relay_lag() is None  # starts the wait
    now[0] = 32.0
    assert signer._relay_lag() is None
    now[0] = 34.0
    signer.status.lagging = signer._relay_lag()
    trouble = signer.status.trouble()
    assert trouble is not None
    assert trouble.startswith("behind the relay")
    assert "(position 1) for more than 33 s" in trouble
    published.published(2, LINKS[1][2])  # moving, but not yet past what it was behind
    assert signer._relay_lag() is not None
    published.published(3, LINKS[2][2])  # caught up
    assert signer._relay_lag() is None
    log.head = 5  # more stored: the wait starts afresh
    now[0] = 40.0
    assert signer._relay_lag() is None
    now[0] = 80.0
    assert signer._relay_lag() is not None
    unlimited = Checkpointer(
        log, load_or_create(Path("/nonexistent/k")), every_events=1, every_seconds=1,  # type: ignore[arg-type]
        published=published,
    )  # fmt: skip
    assert unlimited._relay_lag() is None
