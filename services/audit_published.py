"""The relay's published chain head against the store: as the signer walks it
(`check_walk`), and remembered beside the signer's key, outside the database, so that a
restart does not forget what the relay published.

A relay that starts again takes the store's own link at its stored position as its
chain (`consumers.relay_position.PublishedChain`): it did not read the events before it
in this process. Had an intruder rewritten one of them with its link, the new relay
would hand the rewritten chain on, and the signer would sign it; the intruder can even
force the restart, with a poison event (the relay stops on it). So the relay
writes its head to `<key file>.published` (JSON, mode 0600, replaced atomically) as the
broker acknowledges each page, before it stores its position (`remembering`), and every
signer of that key (`crm audit checkpoint` too) refuses while the store's chain at that
position is another: the refusal outlives a restart, until the store is repaired, and
the position a relay starts from is never ahead of the remembered head.

The file is only ever written once the store was checked against it (`RememberedHead.
remember`), and the relay's anchor is checked against it as the
relay starts (`checked_anchor`): a relay whose store contradicts the file gets no head
for its whole run, so no stop and start turns the store's link into what is remembered.
The file names its store (`RelayHead.origin`); over another store the refusal says so,
and `crm audit checkpoint --adopt` replaces it from the verified log (`adopt_head`).

Since the file is written before the position is stored, a stored position past the
remembered head was moved by hand (red team: an intruder moved the position row forward,
the relay skipped the events between, they never reached Kafka nor the read models, and
the signer signed them), or the head could not be kept (refused or unwritable, which
the signer reported). So the anchor answers the remembered head (`Rewound`) for such a
position, once the store gives it, and the relay publishes from there again. A file of
another store is refused, never a place to start from. With no file but the signer's
record (`.last-signed`), the file was moved aside or deleted: the signer signs only what
the relay published, so the record's checkpoint stands in for the head, and a stored
position past it is published from there again (red team: with the file gone, a moved
position was trusted, and the signer signed the skipped events). With neither (a key
directory that is new) there is nothing to compare, and the position is taken as it is.

The relay's reads here wait for a lock a bounded time (`with_bounded_lock_waits`).

I/O: the file beside the key; the audit log (two link reads).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import msgspec

from consumers.relay_position import AnchorRefused, Rewound
from domain.chain_walk import ChainWalk
from domain.checkpoint import Checkpoint
from services.audit_keys import SigningKey
from services.audit_log import AuditLog, chain_at
from services.audit_log_pg import with_bounded_lock_waits
from services.signer_memory import (
    CheckpointRefused,
    read_kept,
    read_record,
    record_path,
    write_record,
)


class AnotherStore(CheckpointRefused):
    """The remembered head names another store (its chain at position 1 differs): the
    one refusal `crm audit checkpoint --adopt` may clear (`adopt_head`)."""


class RelayHead(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The relay's published position and its chain there (hex), and which store it
    is of: `origin`, the store's chain link at position 1 (hex; it hashes the first
    event, whose aggregate id is random, so no two stores share it). None in a file
    written before it was kept: then the store is not checked."""

    position: int
    chain: str
    origin: str | None = None


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
    if head.origin is not None and (origin := chain_at(log, 1)) != bytes.fromhex(head.origin):
        first = "holds no event at position 1" if origin is None else "begins with another event"
        raise AnotherStore(
            f"not signing: the remembered head is another store's: {path} was written by the"
            f" signer of a store whose chain begins with {head.origin[:16]}…, and this store"
            f" {first}: a key directory reused with a fresh database, or the first event"
            " rewritten with its link. If this store is the right one, run `crm audit"
            " verify`, then `crm audit checkpoint --adopt` (it rewrites the file from the"
            " verified log), or move the file aside if the store holds no checkpoint yet"
        )
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
        """The store must still give the remembered head (as the file holds it now: the
        relay's thread writes it, the signer's checks it)."""
        self._written = read_head(self.path)
        check_head(log, self._written, self.path)

    def remember(self, log: AuditLog, head: tuple[int, bytes] | None) -> None:
        """Write the relay's current head, if it moved; only once the store gives the
        remembered one (`check`, here, before every write): a refused head is never
        replaced (`CheckpointRefused`, or the store's error, and nothing written)."""
        self.check(log)
        if head is None or head[0] == 0:  # nothing published
            return
        origin = self._written.origin if self._written is not None else None
        if origin is None and (first := chain_at(log, 1)) is not None:
            origin = first.hex()
        current = RelayHead(position=head[0], chain=head[1].hex(), origin=origin)
        if current != self._written:
            write_record(self.path, current)
            self._written = current


def remembering(key: SigningKey, log: AuditLog) -> Callable[[tuple[int, bytes]], str | None]:
    """The `remember` of the relay's `PublishedChain` (`crm relay`): the relay's head
    written beside `key` once the store was checked against the remembered one, before
    the relay stores its position (red team: written by the signer's thread, which a
    lock on the checkpoints table stalled, the head fell behind the stored position, and
    a restarted relay took the span between from the store, rewritten). A refusal, or a
    file that cannot be written, is the reason there is no head from then on (the
    signer refuses with it); the store out of reach, or a lock wait that ran out,
    raises, and the relay tries again."""
    remembered, log = RememberedHead(key), with_bounded_lock_waits(log)

    def remember(head: tuple[int, bytes]) -> str | None:
        try:
            remembered.remember(log, head)
        except CheckpointRefused as error:
            return f"{error}; the relay's head is not remembered, nor signed, from now on"
        except OSError as error:
            return f"not signing: the relay's head could not be kept beside the key: {error}"
        return None

    return remember


def checked_anchor(key: SigningKey, log: Callable[[], AbstractContextManager[AuditLog]]
                   ) -> Callable[[int], bytes | Rewound | None]:  # fmt: skip
    """The anchor of the relay's `PublishedChain` (`crm relay`): the store's link at
    the relay's stored position, only if the store still gives the head remembered
    beside `key`; else `AnchorRefused`, and the relay has no head to sign with for the
    whole run, so no stop or restart can make the store's link the remembered truth.
    A stored position past the remembered head gives that head (`Rewound`); with no
    head remembered, one past the last checkpoint signed (`.last-signed`) gives that."""

    def anchor(position: int) -> bytes | Rewound | None:
        path = head_path(key)
        with log() as audit_log:
            try:
                head = read_head(path)
                check_head(with_bounded_lock_waits(audit_log), head, path)
                signed = read_record(record_path(key)) if head is None else None
            except CheckpointRefused as error:
                raise AnchorRefused(
                    f"{error}; the relay started from the store's link and has no chain"
                    " head to sign with until it starts again over a repaired store"
                ) from None
            if head is not None and 0 < head.position < position:
                return Rewound(head.position, bytes.fromhex(head.chain))
            if signed is not None and 0 < signed.checkpoint.position < position:
                return _signed_instead(key, signed.checkpoint)
            return chain_at(audit_log, position)

    return anchor


def _signed_instead(key: SigningKey, signed: Checkpoint) -> Rewound:
    """No `.published` beside a `.last-signed` record: the file was moved aside or
    deleted (the relay writes it before every position it stores, and the signer signs
    only what the relay published), so a stored position past the last signed checkpoint
    is not trusted (red team: with the file gone, a position moved forward was taken,
    and the signer signed events never published). Published again from the checkpoint."""
    return Rewound(
        signed.position,
        bytes.fromhex(signed.chain_head),
        f"the stored position is past the last checkpoint signed ({record_path(key)}), and"
        f" the relay's published head is not beside the audit key ({head_path(key)} missing:"
        " moved aside or deleted), so nothing vouches for the events between: the position"
        " was perhaps moved by hand; publishing from the checkpoint again (duplicates)",
    )


def adopt_head(log: AuditLog, key: SigningKey, verified: Checkpoint) -> RelayHead | None:
    """After `crm audit checkpoint --adopt` verified the whole log: a remembered head of
    another store is replaced by the adopted checkpoint's; the new head, None if the file
    was kept (or none). A head this store contradicts otherwise (`deleted`, `edited`) is
    refused, not replaced: the checkpoints say nothing of the events after the newest,
    which are what the file vouches for, and an intruder's deletion of the published tail
    reads as a restore from an older backup (red team: `--adopt` laundered one). Only an
    operator who has checked the store against Kafka (`crm audit verify --kafka`) moves
    the file aside, by hand."""
    path = head_path(key)
    try:
        check_head(log, read_head(path), path)
    except AnotherStore:
        first = chain_at(log, 1)
        head = RelayHead(
            position=verified.position,
            chain=verified.chain_head,
            origin=None if first is None else first.hex(),
        )
        write_record(path, head)
        return head
    except CheckpointRefused as error:
        raise CheckpointRefused(
            f"{error}. --adopt does not replace this: the checkpoints vouch for nothing after"
            f" the newest, and a deletion of the published tail reads as a restore. Compare the"
            f" store with what the relay published (`crm audit verify --kafka`); only if it"
            f" holds, move {path} aside yourself, giving up what it vouched for"
        ) from None
    return None
