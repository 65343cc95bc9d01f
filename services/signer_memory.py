"""What the checkpoint signer last signed, kept beside its key, outside the database.

Whoever can write the event store's database can rewrite an event, recompute every
chain link (SHA-256 is public) and delete the checkpoint rows. A signer that trusted
those rows, or started from the log's beginning when there were none, would then sign
the rewritten history with the real key. So after each signing the signer writes the
checkpoint it signed and its Merkle frontier to `<key file>.last-signed` (JSON, mode
0600, replaced atomically), and `resume` continues only from there:

* it never signs over a store whose newest checkpoint its key did not sign;
* the stored chain head at the remembered position must still be the one it signed
  (the log up to there was not rewritten), and a newer checkpoint of its own in the
  store must be reached by walking on from there;
* a key without a record, over a store that holds checkpoints, is refused (restore the
  record from the backup of the key's directory, or `adopt` after `crm audit verify`);
  without both, the first checkpoint starts at the log's beginning as ever.

I/O: the record file; the audit log (read, and `adopt`'s verify).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeVar

import msgspec
import structlog

from domain.chain_walk import ChainWalk
from domain.checkpoint import Checkpoint
from domain.merkle import MerkleFrontier
from services.audit_keys import SigningKey, signature_valid, sync_directory
from services.audit_log import AuditLog

_log = structlog.get_logger("crm.audit")


class CheckpointRefused(Exception):  # noqa: N818 - reads as what happened
    """The log does not match its chain, the signer's record or the last checkpoint:
    nothing is signed."""


class LastSigned(msgspec.Struct, frozen=True, kw_only=True):
    """The record: the newest checkpoint this signer signed, and the Merkle frontier
    of the events it covers (hex), to continue the tree without trusting the store."""

    checkpoint: Checkpoint
    frontier: str

    def walk(self, newer: Checkpoint | None) -> ChainWalk:
        """A walk on from here, checking `newer` (a checkpoint of this key's in the store,
        beyond the record) on the way."""
        last = self.checkpoint
        tree = MerkleFrontier.from_bytes(last.tree_size, bytes.fromhex(self.frontier))
        return ChainWalk(
            () if newer is None else (newer,),
            position=last.position,
            chain=bytes.fromhex(last.chain_head),
            tree=tree,
        )


Kept = TypeVar("Kept", bound=msgspec.Struct)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LastSigned)


def record_path(key: SigningKey) -> Path:
    """`<key file>.last-signed`: the same directory (and backup) as the key."""
    return key.path.with_name(key.path.name + ".last-signed")


def read_record(path: Path) -> LastSigned | None:
    """The record, None if there is none; `CheckpointRefused` if it cannot be read."""
    return read_kept(path, _decoder, "the signer's record")


def read_kept(path: Path, decoder: msgspec.json.Decoder[Kept], what: str) -> Kept | None:
    """A file kept beside the key (`what` it is), None if there is none;
    `CheckpointRefused` if it cannot be read."""
    try:
        return decoder.decode(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as error:
        raise CheckpointRefused(
            f"not signing: {what} {path} is unreadable ({error});"
            " restore it from the backup of the key's directory"
        ) from None


def write_record(path: Path, record: msgspec.Struct) -> None:
    """Replace the record (or another file kept beside the key: `services.audit_published`)
    atomically (a crash leaves the old one or the new one, whole)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(_encoder.encode(record))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def resume(log: AuditLog, key: SigningKey, record: LastSigned | None) -> ChainWalk:
    """Where signing may continue from, or `CheckpointRefused` (see the module doc)."""
    latest = log.latest_checkpoint()
    newest = None if latest is None else latest[0]
    if not key.exists():
        _refuse_new_key(key, newest, record)
        return ChainWalk()  # a new store: the key is created when signing
    if newest is not None and not signature_valid(key.public_key, newest):
        raise CheckpointRefused(
            f"not signing: the store's newest checkpoint (position {newest.position}, signed "
            f"at {newest.signed_at!r}) was not signed by this signer's key {_short(key)} "
            f"({key.path}): either the row was forged or the key file was replaced; restore "
            "the original key file, then run `crm audit verify`"
        )
    if record is None:
        if newest is None:
            return ChainWalk()  # the first checkpoint ever
        raise CheckpointRefused(
            f"not signing: the store holds checkpoints (newest at position {newest.position})"
            f" but this signer has no record of what it signed ({record_path(key)}); restore"
            " that file from the backup of the key's directory (it is never recreated from"
            " the database, which could have been rewritten)"
        )
    _check_record(log, key, record)
    last = record.checkpoint
    if newest is None or newest.position < last.position:
        _store_again(log, record)
    elif newest.position == last.position and _heads(newest) != _heads(last):
        raise CheckpointRefused(
            f"not signing: the store's checkpoint at position {last.position} and the one"
            f" this signer remembers signing there ({record_path(key)}) commit to different"
            " heads; run `crm audit verify`"
        )
    return record.walk(newest if newest is not None and newest.position > last.position else None)


def _heads(checkpoint: Checkpoint) -> tuple[int, str, str]:
    return checkpoint.tree_size, checkpoint.chain_head, checkpoint.tree_head


def _store_again(log: AuditLog, record: LastSigned) -> None:
    """The store lacks the checkpoint this signer signed last, though the log still gives
    its chain head: a crash between the record and the row, or rows deleted. Put it back."""
    last = record.checkpoint
    log.add_checkpoint(last, bytes.fromhex(record.frontier))
    _log.error("checkpoint missing from the store, stored again from the signer's record",
               position=last.position, signed_at=last.signed_at)  # fmt: skip


def _check_record(log: AuditLog, key: SigningKey, record: LastSigned) -> None:
    last = record.checkpoint
    if not signature_valid(key.public_key, last):
        raise CheckpointRefused(
            f"not signing: the signer's record {record_path(key)} holds a checkpoint its key"
            f" {_short(key)} did not sign; restore the key and record from the same backup"
        )
    stored = log.link_before(last.position + 1)
    if stored is None or stored[0] != last.position:
        raise CheckpointRefused(
            f"not signing: the log no longer holds position {last.position}, where the "
            f"checkpoint this signer signed at {last.signed_at} ends (deleted or restored "
            "from an older backup); run `crm audit verify`"
        )
    if stored[1].hex() != last.chain_head:
        raise CheckpointRefused(
            f"not signing: the chain head at position {last.position} is not the one this "
            f"signer signed at {last.signed_at}: the log up to there was rewritten together "
            "with its chain; run `crm audit verify --checkpoints` with a kept copy"
        )


def adopt(log: AuditLog, key: SigningKey) -> LastSigned:
    """Make the store's newest checkpoint the record, for a signer upgraded from a
    release that kept none (or whose record was lost): only if its key signed it and
    the whole log verifies against every checkpoint in the store. The operator
    answers for the store not having been rewritten before (a kept copy of the
    checkpoints, `crm audit verify --checkpoints`/`--kafka`)."""
    from services.audit_verify import verify_log

    latest = log.latest_checkpoint()
    if latest is None:
        raise CheckpointRefused("nothing to adopt: the store holds no checkpoint")
    newest, frontier = latest
    if (kept := read_record(record_path(key))) is not None:
        _may_replace(log, key, kept, newest)
    report = verify_log(log, log.checkpoints(), key.load().public_key)
    if report.broken is not None:
        raise CheckpointRefused(f"not adopting: {report.broken}")
    if not signature_valid(key.public_key, newest):
        raise CheckpointRefused("not adopting: this key did not sign the newest checkpoint")
    tree = MerkleFrontier.from_bytes(newest.tree_size, frontier)
    if tree.root().hex() != newest.tree_head:
        raise CheckpointRefused("not adopting: the saved Merkle frontier is not the tree's")
    record = LastSigned(checkpoint=newest, frontier=frontier.hex())
    write_record(record_path(key), record)
    return record


def _may_replace(log: AuditLog, key: SigningKey, kept: LastSigned, newest: Checkpoint) -> None:
    """Adopting never takes the record back: a record ahead of the store's newest
    checkpoint is the signer's evidence that checkpoints went missing (an intruder's
    rewrite after them, which the store alone no longer shows), and one whose chain head
    the log no longer holds says the log was rewritten (`_check_record`)."""
    if newest.position < kept.checkpoint.position:
        raise CheckpointRefused(
            f"not adopting: this signer's record {record_path(key)} says it signed up to"
            f" position {kept.checkpoint.position}, past the store's newest checkpoint"
            f" ({newest.position}): checkpoints were deleted, or the database restored from"
            " an older backup. Check the log against a kept copy (`crm audit verify"
            " --checkpoints`); to give up what it signed after that, move the record away"
            " yourself first"
        )
    _check_record(log, key, kept)


def refuse_new_key(log: AuditLog, key: SigningKey) -> None:
    """`CheckpointRefused` when `key` has no file and none may be made for it: the store
    (or the signer's record) holds checkpoints a new key would leave unverifiable. Asked
    by everything that would create the key (signing, `crm audit public-key`)."""
    if not key.exists():
        latest = log.latest_checkpoint()
        _refuse_new_key(key, None if latest is None else latest[0], read_record(record_path(key)))


def _refuse_new_key(key: SigningKey, newest: Checkpoint | None, record: LastSigned | None) -> None:
    if newest is not None or record is not None:
        raise CheckpointRefused(_no_key(key, newest))


def _no_key(key: SigningKey, newest: Checkpoint | None) -> str:
    signed = (
        f"checkpoints up to position {newest.position} signed by key {newest.public_key[:16]}…"
        if newest is not None
        else f"no checkpoint, but this signer's record {record_path(key)} says it signed"
    )
    return (
        f"not signing: there is no signing key at {key.path}, and the store holds {signed}."
        " A new key would leave every earlier checkpoint unverifiable, so none is created:"
        " restore the key file (and its .last-signed record) from backup, or point"
        " CRM_AUDIT_KEY_FILE at it"
    )


def _short(key: SigningKey) -> str:
    return key.public_key.hex()[:16] + "…"
