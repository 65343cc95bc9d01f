"""The relay's published chain head against the store: as the signer walks it
(`check_walk`), and remembered beside the signer's key, outside the database, so that a
restart does not forget what the relay published.

A relay that starts again takes the store's own link at its stored position as its
chain (`consumers.relay_position.PublishedChain`): it did not read the events before it
in this process. Had an intruder rewritten one of them with its link, the new relay
would hand the rewritten chain on, and the signer would sign it; the intruder can even
force the restart, with a poison event (the relay stops on it). So the signer of
`crm relay` writes the head the relay hands it to `<key file>.published` (JSON, mode
0600, replaced atomically, when it changed, at most once a poll of its thread, and once
more as it stops), and every signer of that key (`crm audit checkpoint` too) refuses
while the store's chain at that position is another: the refusal outlives a restart,
until the store is repaired. What a restart still forgets is what the relay published
after the last write: nothing after a stop, up to a poll (1 s) after a crash.

I/O: the file beside the key; the audit log (one link read).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from domain.chain_walk import ChainWalk
from services.audit_keys import SigningKey
from services.audit_log import AuditLog
from services.signer_memory import CheckpointRefused, read_kept, write_record


class RelayHead(msgspec.Struct, frozen=True, kw_only=True):
    """The relay's published position and its chain there (hex)."""

    position: int
    chain: str


_decoder = msgspec.json.Decoder(RelayHead)


def head_path(key: SigningKey) -> Path:
    """`<key file>.published`: beside the key and its `.last-signed` record."""
    return key.path.with_name(key.path.name + ".published")


def read_head(path: Path) -> RelayHead | None:
    """The remembered head, None if none; `CheckpointRefused` if it cannot be read."""
    return read_kept(path, _decoder, "the relay's published head")


def check_head(log: AuditLog, head: RelayHead | None, path: Path) -> None:
    """`CheckpointRefused` unless the store's chain at `head` is the relay's."""
    if head is None or head.position == 0:
        return
    stored = log.link_before(head.position + 1)
    if stored is None or stored[0] != head.position:
        raise CheckpointRefused(
            f"not signing: deleted at position {head.position}: the relay published an event"
            f" there ({path}), and the log no longer holds its link"
        )
    if stored[1].hex() != head.chain:
        raise CheckpointRefused(
            f"not signing: edited before position {head.position}: the log's chain there is"
            f" not the one the relay folded over the events it published ({path}); an event"
            " was rewritten together with its chain link after the relay published it"
            " (`crm audit verify --kafka` names it)"
        )


def check_walk(walk: ChainWalk, start: int, position: int, chain: bytes) -> None:
    """`CheckpointRefused` unless the store's chain, walked from the last checkpoint
    (`start`), ends at the relay's published position with the head it folded there."""
    if walk.position != position:
        raise CheckpointRefused(
            f"not signing: deleted at position {position}: the relay published an event"
            f" there, and the log now ends at position {walk.position}"
        )
    if walk.chain != chain:
        raise CheckpointRefused(
            f"not signing: edited before position {position}: the log's chain there is not"
            " the one the relay folded over the events it published, as it read them; an"
            f" event after position {start} was rewritten together with its chain link"
            " after the relay published it (`crm audit verify --kafka` names it)"
        )


class RememberedHead:
    """The file, as the signer of `crm relay` keeps it: checked, then moved on."""

    def __init__(self, key: SigningKey) -> None:
        self.path = head_path(key)
        self._written: RelayHead | None = None

    def check(self, log: AuditLog) -> None:
        """The store must still give the remembered head (read from the file once)."""
        if self._written is None:
            self._written = read_head(self.path)
        check_head(log, self._written, self.path)

    def remember(self, head: tuple[int, bytes] | None) -> None:
        """Write the relay's current head, if it moved."""
        if head is None or head[0] == 0:  # nothing published
            return
        current = RelayHead(position=head[0], chain=head[1].hex())
        if current != self._written:
            write_record(self.path, current)
            self._written = current
