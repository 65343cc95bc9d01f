"""Walking a chained log: recompute the chain, compare it, name the first break.

The walk is fed pages of two position-ordered streams covering the same range: the
log's entries `(position, canonical bytes)` and the stored links `(position, previous
position, chain)`. It recomputes the chain (and, from the start of the log, the Merkle
tree) and checks them against the links and against signed checkpoints. Kinds:

* `deleted`: a link (or a checkpoint, or a link's `previous`) names a position the log
  no longer holds, or a checkpoint signs more entries than the log has (truncation), or
  the log ends below what the relay already published (`below_published`);
* `inserted`: an entry without a link, or one the next link skips over, or more entries
  than a checkpoint signs, or one stored at a position below 1 (`stray`);
* `reordered`: the link at a position fits an entry that now sits elsewhere
  (`relinked_elsewhere`, given the entries that follow);
* `edited`: the entry's bytes no longer give its link, or the log (chain rewritten with
  it) no longer gives a checkpoint's heads.

I/O: none. Signatures are checked before checkpoints are handed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from enum import StrEnum

import msgspec

from domain.checkpoint import Checkpoint
from domain.hashchain import GENESIS, CanonicalEvent, link
from domain.merkle import MerkleFrontier

Entry = tuple[int, bytes]
"""(position, canonical bytes)."""
Link = tuple[int, int, bytes]
"""(position, previous position, chain value)."""
_NONE = 1 << 63


class BreakKind(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"


class Break(msgspec.Struct, frozen=True, kw_only=True):
    """The first place where the log stops matching its chain or a checkpoint."""

    kind: BreakKind
    position: int
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} at position {self.position}: {self.detail}"


class ChainWalk:
    """Recomputes a chain from `(position, chain)`, by default the log's start. A walk
    from the start also rebuilds the Merkle tree and counts the entries; one from the
    middle does so only if given the tree of the entries before it."""

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint] = (),
        *,
        position: int = 0,
        chain: bytes = GENESIS,
        tree: MerkleFrontier | None = None,
    ) -> None:
        self.position = position
        self.chain = chain
        self.tree = MerkleFrontier() if tree is None and position == 0 else tree
        self.count = 0 if self.tree is None else self.tree.size
        self.pending = sorted(checkpoints, key=lambda c: c.position, reverse=True)
        self.checked = 0
        self.mismatch: Entry | None = None
        """The entry whose bytes did not give its link (see `relinked_elsewhere`)."""

    def feed(self, entries: Sequence[Entry], links: Sequence[Link]) -> Break | None:
        """Walk one page: both lists in position order, over the same position range.

        One loop with its hashing inlined, on purpose: it is a verify's cost per event
        (the target is 100,000 events/s), and a call per step costs more than the step."""
        i = j = 0
        n_entries, n_links = len(entries), len(links)
        tree = self.tree
        next_checkpoint = self.pending[-1].position if self.pending else _NONE
        while i < n_entries or j < n_links:
            entry_at = entries[i][0] if i < n_entries else _NONE
            link_at = links[j][0] if j < n_links else _NONE
            at = min(entry_at, link_at)
            if at > next_checkpoint:
                return self._missing_checkpoint()
            if entry_at != link_at:
                return self._unmatched(entries[i] if entry_at < link_at else None, at)
            position, canonical = entries[i]
            _, previous, stored = links[j]
            if previous != self.position:
                return self._relinked(previous, position, canonical)
            chain = hashlib.sha256(self.chain + canonical).digest()
            if chain != stored:
                self.mismatch = (position, canonical)
                return Break(
                    kind=BreakKind.EDITED,
                    position=position,
                    detail=f"{CanonicalEvent(canonical)} does not give its chain link",
                )
            if tree is not None:
                tree.append_hash(hashlib.sha256(b"\x00" + canonical).digest())
            self.chain, self.position = chain, position
            self.count += 1
            if position == next_checkpoint:
                failed = self._check(self.pending.pop())
                if failed is not None:
                    return failed
                next_checkpoint = self.pending[-1].position if self.pending else _NONE
            i += 1
            j += 1
        return None

    def finish(self) -> Break | None:
        """After the last page: a checkpoint beyond the end means a truncated log."""
        if self.pending:
            checkpoint = self.pending[-1]
            return Break(
                kind=BreakKind.DELETED,
                position=checkpoint.position,
                detail=f"the log ends at position {self.position}, but a checkpoint signed "
                f"at {checkpoint.signed_at} covers it up to {checkpoint.position} (truncated)",
            )
        return None

    def _unmatched(self, entry: Entry | None, at: int) -> Break:
        if entry is None:
            return Break(
                kind=BreakKind.DELETED,
                position=at,
                detail="the chain links an event here that the log no longer holds",
            )
        return Break(
            kind=BreakKind.INSERTED,
            position=at,
            detail=f"{CanonicalEvent(entry[1])} has no chain link"
            " (if it was recorded before the chain existed: `crm audit seal-existing`)",
        )

    def _relinked(self, previous: int, position: int, canonical: bytes) -> Break:
        if previous > self.position:
            return Break(
                kind=BreakKind.DELETED,
                position=previous,
                detail=f"the link of position {position} follows position {previous},"
                " which the log no longer holds",
            )
        return Break(
            kind=BreakKind.INSERTED,
            position=self.position,
            detail=f"the link of position {position} ({CanonicalEvent(canonical)}) follows"
            f" position {previous}, so the event at {self.position} was slipped in",
        )

    def _missing_checkpoint(self) -> Break:
        checkpoint = self.pending[-1]
        return Break(
            kind=BreakKind.DELETED,
            position=checkpoint.position,
            detail="a signed checkpoint ends at this position; the log no longer holds it",
        )

    def _check(self, checkpoint: Checkpoint) -> Break | None:
        self.checked += 1
        signed = f"the checkpoint signed at {checkpoint.signed_at}"
        if self.tree is not None and self.count != checkpoint.tree_size:
            more = self.count > checkpoint.tree_size
            return Break(
                kind=BreakKind.INSERTED if more else BreakKind.DELETED,
                position=checkpoint.position,
                detail=f"{signed} covers {checkpoint.tree_size} events up to here, "
                f"the log holds {self.count} (the chain was rewritten to match)",
            )
        if self.chain.hex() != checkpoint.chain_head:
            return Break(
                kind=BreakKind.EDITED,
                position=checkpoint.position,
                detail=f"{signed} has another chain head: events up to here were "
                "rewritten together with their chain",
            )
        if self.tree is not None and self.tree.root().hex() != checkpoint.tree_head:
            return Break(
                kind=BreakKind.EDITED,
                position=checkpoint.position,
                detail=f"{signed} has another Merkle tree head",
            )
        return None


def relinked_elsewhere(walk: ChainWalk, stored: bytes, later: Iterable[Entry]) -> Break | None:
    """After an `edited` break: if an entry that now sits later in the log gives the
    broken link when put back at that position, the log was reordered."""
    if walk.mismatch is None:
        return None
    position, canonical = walk.mismatch
    here = CanonicalEvent(canonical)
    for elsewhere, other in later:
        event = CanonicalEvent(other)
        if link(walk.chain, event.at(position)) == stored:
            return Break(
                kind=BreakKind.REORDERED,
                position=position,
                detail=f"the chain puts {event} here, the log has it at position "
                f"{elsewhere} and {here} here instead",
            )
    return None


def below_published(published: int, last: int, records: str, hint: str) -> Break | None:
    """A log ending at `last`, below `published`, the position up to which the relay
    already published it (it publishes only what is stored): `records` were removed."""
    if published <= last:
        return None
    return Break(
        kind=BreakKind.DELETED,
        position=published,
        detail=f"the relay already published the {records} up to position {published} to"
        f" Kafka, but the store ends at {last}: {records} after it were removed ({hint})",
    )


def stray(position: int | None, event: str) -> Break:
    """`event`, stored at `position` below 1 (None: no position at all), where no walk
    of the log reads it, though the application does (by aggregate id and version)."""
    return Break(
        kind=BreakKind.INSERTED,
        position=0 if position is None else position,
        detail=f"{event} is stored at position {position}, below the first a walk reads (1):"
        " the application reads it as its aggregate's event, and no link or checkpoint"
        " covers it",
    )
