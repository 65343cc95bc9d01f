"""The hash chain over an append-only log: canonical bytes of a stored event, one link.

`chain_i = SHA-256(chain_{i-1} || canonical_i)`, starting from `GENESIS` (32 zero
bytes), in commit order. Any append-only log can be chained with `link` over its own
canonical bytes (the event store's events here; an access log the same way), and
`ChainWalk` checks a chained log and names its first break.

The canonical bytes of a stored event are exactly what the event store holds, so that
anyone can recompute them from the rows (`docs/audit.md` describes the layout):

    position (8 bytes, big-endian) || aggregate id (16 bytes, RFC 4122 order) ||
    version (8 bytes, big-endian) || length of topic (4) || topic (UTF-8) ||
    length of state (4) || state

The state is the event as stored: JSON with its metadata (actor, department,
correlation and causation ids, time) and its personal fields *sealed*, so destroying a
customer's key (erasure) leaves every byte, and the chain, as it was. The same layout
is computed in SQL by the PostgreSQL insert (`services.pg_batch_recorder`).

I/O: none.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from uuid import UUID

GENESIS = bytes(32)
"""The chain value before the first event."""

_HEAD = struct.Struct(">q16sqI")
_LENGTH = struct.Struct(">I")


def canonical_event(
    position: int, aggregate_id: UUID, version: int, topic: str, state: bytes
) -> bytes:
    """The bytes that are hashed for one stored event (see the module docstring)."""
    return canonical_bytes(position, aggregate_id.bytes, version, topic, state)


def canonical_bytes(
    position: int, aggregate_id: bytes, version: int, topic: str, state: bytes
) -> bytes:
    """`canonical_event` with the aggregate id as its 16 bytes (as stores hold it)."""
    encoded_topic = topic.encode()
    return b"".join(
        (
            _HEAD.pack(position, aggregate_id, version, len(encoded_topic)),
            encoded_topic,
            _LENGTH.pack(len(state)),
            state,
        )
    )


class CanonicalEvent:
    """The fields back out of canonical bytes (to name an event in a report or a proof)."""

    def __init__(self, canonical: bytes) -> None:
        position, raw_id, version, topic_length = _HEAD.unpack_from(canonical)
        start = _HEAD.size
        self.position: int = position
        self.aggregate_id = UUID(bytes=raw_id)
        self.version: int = version
        self.topic = canonical[start : start + topic_length].decode()
        start += topic_length + _LENGTH.size
        self.state = canonical[start:]

    def at(self, position: int) -> bytes:
        """The canonical bytes this event would have at another `position`."""
        return canonical_event(position, self.aggregate_id, self.version, self.topic, self.state)

    def __str__(self) -> str:
        return f"{self.topic.partition('@')[0]} of {self.aggregate_id} version {self.version}"


def link(previous: bytes, canonical: bytes) -> bytes:
    """The next chain value: SHA-256(previous chain || canonical bytes)."""
    digest = hashlib.sha256(previous)
    digest.update(canonical)
    return digest.digest()


def chain_links(previous: bytes, canonicals: Iterable[bytes]) -> list[bytes]:
    """The chain value after each of `canonicals`, in order, continuing from `previous`."""
    values = []
    for canonical in canonicals:
        previous = link(previous, canonical)
        values.append(previous)
    return values


def chain_rows(
    head_position: int, head: bytes, positions: Sequence[int], canonicals: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """Rows `(position, previous position, chain)` for a batch appended after the head."""
    previous = [head_position, *positions[:-1]] if positions else []
    return list(zip(positions, previous, chain_links(head, canonicals), strict=True))
