"""A signed checkpoint: the log's position, chain head and Merkle tree head at an instant.

What is signed (Ed25519) is `statement(...)`, a few lines of text an auditor can read
and rebuild from the published JSON without any of this code:

    crm-collab checkpoint v1
    position <notification id of the last event covered>
    tree-size <number of events covered>
    chain-head <hex>
    tree-head <hex>
    signed-at <RFC 3339 time, exactly as published>

Checkpoints travel as JSON (`encode`/`decode`): in the store, on the Kafka topic
`crm.audit.checkpoints.v1`, at `GET /v1/audit/checkpoints` and inside inclusion proofs.
Signing needs a private key and lives outside the domain (`services.audit_keys`).

I/O: none.
"""

from __future__ import annotations

import msgspec

HEADER = "crm-collab checkpoint v1"


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One signed checkpoint. Hashes, key and signature are lowercase hex."""

    position: int
    tree_size: int
    chain_head: str
    tree_head: str
    signed_at: str
    public_key: str
    signature: str

    def statement(self) -> bytes:
        return statement(
            self.position,
            self.tree_size,
            bytes.fromhex(self.chain_head),
            bytes.fromhex(self.tree_head),
            self.signed_at,
        )


def statement(
    position: int, tree_size: int, chain_head: bytes, tree_head: bytes, signed_at: str
) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    lines = (
        HEADER,
        f"position {position}",
        f"tree-size {tree_size}",
        f"chain-head {chain_head.hex()}",
        f"tree-head {tree_head.hex()}",
        f"signed-at {signed_at}",
    )
    return ("\n".join(lines) + "\n").encode()


_decoder = msgspec.json.Decoder(Checkpoint)
_encoder = msgspec.json.Encoder()


def encode(checkpoint: Checkpoint) -> bytes:
    return _encoder.encode(checkpoint)


def decode(data: bytes | str) -> Checkpoint:
    """A checkpoint from its JSON; `msgspec.DecodeError` if it is none (a string that is
    not UTF-8 too, which msgspec raises as `UnicodeDecodeError`)."""
    try:
        return _decoder.decode(data)
    except UnicodeDecodeError as error:
        raise msgspec.DecodeError(f"JSON is malformed: {error}") from None
