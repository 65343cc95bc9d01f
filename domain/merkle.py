"""Merkle tree hashes and inclusion proofs as RFC 9162 (Certificate Transparency 2.0) defines.

Leaves are the canonical bytes of the log's entries in order (leaf index 0 = the first).
`leaf_hash = SHA-256(0x00 || leaf)`, `node_hash = SHA-256(0x01 || left || right)`, and
the tree head of n leaves splits at the largest power of two below n (§2.1.1).

`MerkleFrontier` computes the tree head while the leaves stream past, keeping one hash
per set bit of the count (log2 n of them), so a checkpointer or a verifier never holds
the whole log; `inclusion_path` also streams. `root_from_path` is the verification
algorithm of §2.1.3.2 (the stand-alone `docs/audit/verify_proof.py` repeats it with
the standard library only).

I/O: none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The tree head of zero leaves (§2.1.1)."""


def leaf_hash(leaf: bytes) -> bytes:
    digest = hashlib.sha256(b"\x00")
    digest.update(leaf)
    return digest.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleFrontier:
    """The roots of the perfect subtrees that make up a growing tree, largest first.

    Appending a leaf merges equal-sized neighbours, as binary addition carries; the tree
    head folds them from the right. Saved beside a checkpoint (`to_bytes`), it lets the
    next checkpoint continue without re-reading the log.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a frontier of {size} leaves has {size.bit_count()} hashes")
        self.size = size
        self.hashes = list(hashes)

    def append_hash(self, hashed: bytes) -> None:
        """Add a leaf by its leaf hash."""
        size = self.size
        hashes = self.hashes
        while size & 1:
            hashed = node_hash(hashes.pop(), hashed)
            size >>= 1
        hashes.append(hashed)
        self.size += 1

    def append(self, leaf: bytes) -> None:
        self.append_hash(leaf_hash(leaf))

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        hashed = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            hashed = node_hash(left, hashed)
        return hashed

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> MerkleFrontier:
        return cls(size, [data[i : i + 32] for i in range(0, len(data), 32)])


def tree_head(leaves: Iterable[bytes]) -> bytes:
    frontier = MerkleFrontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges `[start, end)` whose tree heads form the audit path of `index`
    in a tree of `size` leaves, in path order (nearest sibling first), per §2.1.3.1."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        split = start + _largest_power_of_two_below(end - start)
        if index < split:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            start = split
    ranges.reverse()
    return ranges


def inclusion_path(index: int, size: int, leaf_hashes: Iterable[bytes]) -> list[bytes]:
    """The audit path of leaf `index`, reading the first `size` leaf hashes once, in order."""
    ranges = path_ranges(index, size)
    by_start = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    path: list[bytes] = [b""] * len(ranges)
    hashes = iter(leaf_hashes)
    position = 0
    for slot in by_start:
        start, end = ranges[slot]
        for _ in range(start - position):  # the proven leaf itself
            next(hashes)
        frontier = MerkleFrontier()
        for _ in range(end - start):
            frontier.append_hash(next(hashes))
        path[slot] = frontier.root()
        position = end
    return path


def root_from_path(
    index: int, size: int, hashed_leaf: bytes, path: Sequence[bytes]
) -> bytes | None:
    """The tree head that `path` proves `hashed_leaf` is leaf `index` of (§2.1.3.2), or
    None when the path cannot belong to a tree of `size` leaves."""
    if index >= size:
        return None
    fn, sn, result = index, size - 1, hashed_leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None
