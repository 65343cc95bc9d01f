"""The hash chain and its walk: canonical bytes, links, and every kind of break.

A log here is a list of entries `(position, canonical bytes)` with their stored links
`(position, previous, chain)`, tampered with as an intruder with write access to the
tables would, then walked in pages as `crm audit verify` walks a store.
"""

from __future__ import annotations

import hashlib
import struct
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.chain_walk import Break, BreakKind, ChainWalk, Entry, Link, relinked_elsewhere
from domain.checkpoint import Checkpoint
from domain.hashchain import GENESIS, CanonicalEvent, canonical_event, chain_rows, link
from domain.merkle import tree_head

AGGREGATE = UUID("00000000-0000-4000-8000-000000000001")


def test_canonical_bytes_layout() -> None:
    canonical = canonical_event(258, AGGREGATE, 3, "CustomerTagged@1", b'{"a":1}')
    assert canonical == (
        struct.pack(">q", 258)
        + AGGREGATE.bytes
        + struct.pack(">q", 3)
        + struct.pack(">I", 16)
        + b"CustomerTagged@1"
        + struct.pack(">I", 7)
        + b'{"a":1}'
    )
    event = CanonicalEvent(canonical)
    assert (event.position, event.aggregate_id, event.version) == (258, AGGREGATE, 3)
    assert (event.topic, event.state) == ("CustomerTagged@1", b'{"a":1}')
    assert event.at(258) == canonical
    assert str(event) == f"CustomerTagged of {AGGREGATE} version 3"


def test_a_link_hashes_the_previous_chain_then_the_canonical_bytes() -> None:
    assert link(GENESIS, b"abc") == hashlib.sha256(bytes(32) + b"abc").digest()


def _log(count: int, gaps: bool = True) -> tuple[list[Entry], list[Link]]:
    """`count` events at positions with gaps (rolled-back inserts leave some)."""
    positions = [i * 2 + 1 if gaps and i % 3 == 0 else i * 2 for i in range(1, count + 1)]
    entries = [
        (p, canonical_event(p, uuid4(), 1, "CustomerRegistered@1", b'{"n":%d}' % p))
        for p in positions
    ]
    links = chain_rows(0, GENESIS, positions, [c for _, c in entries])
    return entries, links


def _checkpoint(entries: list[Entry], links: list[Link], upto: int) -> Checkpoint:
    """An (unsigned: the walk does not check signatures) checkpoint after `upto` events."""
    return Checkpoint(
        position=entries[upto - 1][0],
        tree_size=upto,
        chain_head=links[upto - 1][2].hex(),
        tree_head=tree_head(c for _, c in entries[:upto]).hex(),
        signed_at="2030-01-01T00:00:00+00:00",
        public_key="",
        signature="",
    )


def _walk(
    entries: list[Entry],
    links: list[Link],
    checkpoints: tuple[Checkpoint, ...] = (),
    page: int = 4,
) -> tuple[Break | None, ChainWalk]:
    """Feed pages covering `page` positions' worth of the union, as the stores do."""
    walk = ChainWalk(checkpoints)
    positions = sorted({p for p, _ in entries} | {p for p, _, _ in links})
    for start in range(0, len(positions), page):
        low, high = positions[start], positions[min(start + page, len(positions)) - 1]
        found = walk.feed(
            [e for e in entries if low <= e[0] <= high], [k for k in links if low <= k[0] <= high]
        )
        if found is not None:
            return found, walk
    return walk.finish(), walk


@settings(deadline=None)  # a timing check, flaky on a shared machine
@given(st.integers(min_value=0, max_value=40), st.integers(min_value=1, max_value=9))
def test_an_untouched_log_walks_clean_in_any_page_size(count: int, page: int) -> None:
    entries, links = _log(count)
    checkpoints = tuple(_checkpoint(entries, links, n) for n in range(1, count + 1, 5))
    found, walk = _walk(entries, links, checkpoints, page)
    assert found is None
    assert walk.checked == len(checkpoints)
    assert walk.count == count
    assert walk.chain == (links[-1][2] if links else GENESIS)


def test_a_flipped_byte_is_an_edit_at_its_position() -> None:
    entries, links = _log(10)
    position, canonical = entries[4]
    entries[4] = (position, canonical[:-2] + bytes([canonical[-2] ^ 1]) + canonical[-1:])
    found, _ = _walk(entries, links)
    assert found is not None
    assert (found.kind, found.position) == (BreakKind.EDITED, position)
    assert "does not give its chain link" in found.detail


def test_a_deleted_event_is_named_by_its_surviving_link() -> None:
    entries, links = _log(10)
    position = entries.pop(6)[0]
    found, _ = _walk(entries, links)
    assert found == Break(
        kind=BreakKind.DELETED,
        position=position,
        detail="the chain links an event here that the log no longer holds",
    )


def test_an_event_deleted_with_its_link_is_named_by_the_next_link() -> None:
    entries, links = _log(10)
    position = entries.pop(6)[0]
    links.pop(6)
    found, _ = _walk(entries, links)
    assert found is not None
    assert (found.kind, found.position) == (BreakKind.DELETED, position)


def test_an_event_without_a_link_is_an_insertion() -> None:
    entries, links = _log(10)
    forged = canonical_event(15, uuid4(), 1, "CustomerRegistered@1", b"{}")
    entries.insert(7, (15, forged))
    assert entries[6][0] < 15 < entries[8][0]
    found, _ = _walk(entries, links)
    assert found is not None
    assert (found.kind, found.position) == (BreakKind.INSERTED, 15)
    assert "has no chain link" in found.detail


def test_an_event_inserted_with_a_forged_link_is_caught_by_the_next_link() -> None:
    entries, links = _log(10)
    before, after = entries[6][0], entries[7][0]
    forged = canonical_event(before + 1, uuid4(), 1, "CustomerRegistered@1", b"{}")
    assert before + 1 < after
    entries.insert(7, (before + 1, forged))
    links.insert(7, (before + 1, before, link(links[6][2], forged)))
    found, _ = _walk(entries, links)
    assert found is not None
    assert (found.kind, found.position) == (BreakKind.INSERTED, before + 1)


def test_two_swapped_events_are_a_reordering() -> None:
    entries, links = _log(10)
    (p, first), (q, second) = entries[3], entries[6]
    entries[3] = (p, CanonicalEvent(second).at(p))
    entries[6] = (q, CanonicalEvent(first).at(q))
    found, walk = _walk(entries, links)
    assert found is not None
    assert (found.kind, found.position) == (BreakKind.EDITED, p)
    later = [e for e in entries if e[0] > p]
    reordered = relinked_elsewhere(walk, links[3][2], later)
    assert reordered is not None
    assert (reordered.kind, reordered.position) == (BreakKind.REORDERED, p)
    assert f"at position {q}" in reordered.detail


def test_an_edit_is_not_mistaken_for_a_reordering() -> None:
    entries, links = _log(10)
    position, canonical = entries[3]
    entries[3] = (position, canonical + b" ")
    found, walk = _walk(entries, links)
    assert found is not None
    assert relinked_elsewhere(walk, links[3][2], entries[4:]) is None


def test_a_truncated_tail_is_caught_by_a_checkpoint_beyond_it() -> None:
    entries, links = _log(10)
    checkpoint = _checkpoint(entries, links, 9)
    del entries[7:], links[7:]
    found, _ = _walk(entries, links, (checkpoint,))
    assert found is not None
    assert (found.kind, found.position) == (BreakKind.DELETED, checkpoint.position)
    assert "(truncated)" in found.detail


def test_a_rewritten_chain_is_caught_by_a_checkpoint() -> None:
    entries, links = _log(10)
    checkpoint = _checkpoint(entries, links, 8)
    position, canonical = entries[2]
    entries[2] = (position, canonical + b" ")
    rewritten = chain_rows(0, GENESIS, [p for p, _ in entries], [c for _, c in entries])
    found, _ = _walk(entries, rewritten, (checkpoint,))
    assert found is not None
    assert (found.kind, found.position) == (BreakKind.EDITED, checkpoint.position)


@pytest.mark.parametrize(("change", "kind"), [(-1, BreakKind.DELETED), (1, BreakKind.INSERTED)])
def test_a_rewritten_chain_with_fewer_or_more_events_is_caught_by_a_checkpoint(
    change: int, kind: BreakKind
) -> None:
    entries, links = _log(10)
    checkpoint = _checkpoint(entries, links, 8)
    if change < 0:
        del entries[3]
    else:
        entries.insert(3, (entries[2][0] + 1, canonical_event(0, uuid4(), 1, "X@1", b"")))
    rewritten = chain_rows(0, GENESIS, [p for p, _ in entries], [c for _, c in entries])
    found, _ = _walk(entries, rewritten, (checkpoint,))
    assert found is not None
    assert (found.kind, found.position) == (kind, checkpoint.position)


def test_a_checkpoint_position_missing_from_the_log_is_a_deletion() -> None:
    entries, links = _log(10)
    checkpoint = _checkpoint(entries, links, 5)
    del entries[4], links[4]
    links[4] = (links[4][0], links[3][0], link(links[3][2], entries[4][1]))
    found, _ = _walk(entries, links, (checkpoint,))
    assert found is not None
    assert (found.kind, found.position) == (BreakKind.DELETED, checkpoint.position)


def test_a_walk_from_the_middle_checks_links_and_chain_heads_only() -> None:
    entries, links = _log(10)
    checkpoint = _checkpoint(entries, links, 8)
    walk = ChainWalk((checkpoint,), position=links[4][0], chain=links[4][2])
    assert walk.feed(entries[5:], links[5:]) is None
    assert walk.finish() is None
    assert (walk.checked, walk.tree) == (1, None)
