"""Merkle tree heads and inclusion proofs against RFC 9162's recursive definitions.

The streaming code (`MerkleFrontier`, `inclusion_path`) must give what §2.1.1 and
§2.1.3.1 define recursively, and `root_from_path` (§2.1.3.2) must accept exactly the
paths of the tree it is given.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.merkle import (
    EMPTY_ROOT,
    MerkleFrontier,
    inclusion_path,
    leaf_hash,
    root_from_path,
    tree_head,
)


def _mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 §2.1.1 writes it."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) exactly as RFC 9162 §2.1.3.1 writes it."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


LEAVES = st.lists(st.binary(max_size=12), min_size=1, max_size=70)


def test_empty_tree_head_is_the_hash_of_nothing() -> None:
    assert tree_head([]) == EMPTY_ROOT == _mth([])


@settings(deadline=None)  # a timing check, flaky on a shared machine
@given(st.lists(st.binary(max_size=12), max_size=70))
def test_streamed_tree_head_is_rfc_9162_mth(leaves: list[bytes]) -> None:
    assert tree_head(leaves) == _mth(leaves)


@settings(deadline=None)  # a timing check, flaky on a shared machine
@given(LEAVES, st.integers(min_value=0, max_value=70))
def test_frontier_survives_being_saved_and_continued(leaves: list[bytes], cut: int) -> None:
    cut = min(cut, len(leaves))
    first = MerkleFrontier()
    for leaf in leaves[:cut]:
        first.append(leaf)
    resumed = MerkleFrontier.from_bytes(first.size, first.to_bytes())
    for leaf in leaves[cut:]:
        resumed.append(leaf)
    assert resumed.root() == _mth(leaves)


def _proof(leaves: list[bytes], data: st.DataObject) -> tuple[int, list[bytes], list[bytes]]:
    """A drawn leaf index, every leaf hash, and that leaf's audit path."""
    index = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1))
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return index, hashes, inclusion_path(index, len(leaves), iter(hashes))


@settings(deadline=None)  # a timing check, flaky on a shared machine
@given(LEAVES, st.data())
def test_inclusion_path_is_rfc_9162_path_and_verifies(
    leaves: list[bytes], data: st.DataObject
) -> None:
    index, hashes, path = _proof(leaves, data)
    assert path == _path(index, leaves)
    assert root_from_path(index, len(leaves), hashes[index], path) == _mth(leaves)


@settings(deadline=None)  # a timing check, flaky on a shared machine
@given(LEAVES, st.data())
def test_a_path_fails_for_another_leaf_index_or_a_larger_tree(
    leaves: list[bytes], data: st.DataObject
) -> None:
    index, hashes, path = _proof(leaves, data)
    root = _mth(leaves)
    forged = leaf_hash(leaves[index] + b"!")
    assert root_from_path(index, len(leaves), forged, path) != root
    for other in range(len(leaves)):
        if hashes[other] != hashes[index]:
            assert root_from_path(other, len(leaves), hashes[other], path) != root
    assert root_from_path(index, 2 * len(leaves) + 1, hashes[index], path) is None


def test_frontier_refuses_a_wrong_number_of_hashes() -> None:
    with pytest.raises(ValueError, match="a frontier of 3 leaves has 2 hashes"):
        MerkleFrontier(3, [bytes(32)])
