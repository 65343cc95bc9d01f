"""`crm audit prove ID VERSION`: inclusion evidence for one event against a signed checkpoint.

The evidence is everything an auditor needs without a database: the event's stored
fields (from which its canonical bytes and leaf hash are rebuilt), its leaf index, the
RFC 9162 audit path to the checkpoint's Merkle tree head, and the checkpoint with its
signature. `docs/audit/verify_proof.py` checks it with the Python standard library.

Building a path reads the leaf hashes of every event up to the checkpoint once, in
order, holding only O(log n) hashes (`domain.merkle.inclusion_path`), and a page of
events at a time, cut at `PAGE_BYTES` of states (a log of ~350 kB events is read ~25
events a page, not 5,000).

I/O: the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import msgspec

from domain.checkpoint import Checkpoint
from domain.hashchain import CanonicalEvent
from domain.merkle import inclusion_path, leaf_hash, root_from_path
from services.audit_log import PAGE_BYTES, AuditLog

FORMAT = "crm-collab inclusion proof v1"
PAGE = 5000


class ProveError(Exception):
    """No evidence can be given (unknown event, no checkpoint yet, store altered)."""


class ProvenEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The event as stored; `state` is base64 in JSON (its exact bytes)."""

    position: int
    aggregate_id: UUID
    version: int
    topic: str
    state: bytes


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    format: str = FORMAT
    event: ProvenEvent
    leaf_index: int
    tree_size: int
    audit_path: list[str]
    checkpoint: Checkpoint


def prove(
    log: AuditLog, aggregate_id: UUID, version: int, at_checkpoint: int | None = None
) -> Evidence:
    """Evidence that event (`aggregate_id`, `version`) is in the tree of a checkpoint:
    the newest one, or the one ending at position `at_checkpoint`."""
    position = log.position_of(aggregate_id, version)
    if position is None:
        raise ProveError(f"no event of {aggregate_id} with version {version}")
    checkpoint = _covering(log, position, at_checkpoint)
    event = CanonicalEvent(log.entries(position - 1, position, 1)[0][1])
    index = log.count_between(0, position - 1)
    return Evidence(
        event=ProvenEvent(
            position=position,
            aggregate_id=aggregate_id,
            version=version,
            topic=event.topic,
            state=event.state,
        ),
        leaf_index=index,
        tree_size=checkpoint.tree_size,
        audit_path=[sibling.hex() for sibling in _path(log, checkpoint, index, event)],
        checkpoint=checkpoint,
    )


def _path(log: AuditLog, checkpoint: Checkpoint, index: int, event: CanonicalEvent) -> list[bytes]:
    """The audit path of leaf `index`, checked against the signed tree head."""
    try:
        path = inclusion_path(index, checkpoint.tree_size, _leaf_hashes(log, checkpoint.position))
    except (StopIteration, ValueError):  # fewer events than the checkpoint signs
        path = []
    leaf = leaf_hash(event.at(event.position))
    if root_from_path(index, checkpoint.tree_size, leaf, path) != bytes.fromhex(
        checkpoint.tree_head
    ):
        raise ProveError(
            f"the store no longer gives the tree head signed at position {checkpoint.position}"
            " (run `crm audit verify`)"
        )
    return path


def _covering(log: AuditLog, position: int, at_checkpoint: int | None) -> Checkpoint:
    signed = log.checkpoints(after=position - 1)
    if at_checkpoint is not None:
        signed = [c for c in signed if c.position == at_checkpoint]
    if not signed:
        raise ProveError(
            f"no signed checkpoint covers position {position}"
            + ("" if at_checkpoint is None else f" at {at_checkpoint}")
            + " yet (`crm audit checkpoint` signs one now)"
        )
    return signed[-1]


def _leaf_hashes(log: AuditLog, upto: int) -> Iterator[bytes]:
    """Leaf hashes of the events up to position `upto`, in order."""
    after = 0
    while entries := log.entries(after, upto, PAGE, PAGE_BYTES):
        after = entries[-1][0]
        hashes = [leaf_hash(canonical) for _, canonical in entries]
        del entries  # only the page's hashes are held while the path is built
        yield from hashes


def encode(evidence: Evidence) -> bytes:
    return msgspec.json.format(msgspec.json.encode(evidence), indent=2)
