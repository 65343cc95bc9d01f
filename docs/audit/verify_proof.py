#!/usr/bin/env python3
"""Check a CRM Collab inclusion proof offline, with the Python standard library only.

    python3 verify_proof.py PROOF.json --public-key KEY

PROOF.json is what `crm audit prove ID VERSION` prints. KEY is the checkpoint signing
key you pinned (`crm audit public-key` on the signing host): 64 hex digits or a file
holding them. The script rebuilds the event's canonical bytes from its stored fields,
hashes them as an RFC 9162 leaf, climbs the audit path to a Merkle tree head, compares
it with the checkpoint's, and verifies the checkpoint's Ed25519 signature (RFC 8032,
implemented below from the RFC's equations). Exit 0: the event is in the signed log;
exit 1: it is not, or the evidence was altered; exit 2: unusable input.

This file is self-contained on purpose: copy it anywhere; it imports nothing else.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import uuid
from pathlib import Path
from typing import Any

# --- Ed25519 verification (RFC 8032 §5.1) ---------------------------------------------

P = 2**255 - 19  # the field
L = 2**252 + 27742317777372353535851937790883648493  # the group order
D = -121665 * pow(121666, P - 2, P) % P  # the curve constant d
SQRT_M1 = pow(2, (P - 1) // 4, P)  # a square root of -1

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z


def _add(a: Point, b: Point) -> Point:
    """Point addition on -x^2 + y^2 = 1 + d x^2 y^2 (§5.1.4); also doubles."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e1 = (y1 - x1) * (y2 - x2) % P
    e2 = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    dz = 2 * z1 * z2 % P
    e, f, g, h = e2 - e1, dz - c, dz + c, e2 + e1
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _multiply(scalar: int, point: Point) -> Point:
    result: Point = (0, 1, 1, 0)  # the neutral element
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _same(a: Point, b: Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _decode_point(data: bytes) -> Point | None:
    """§5.1.3: y in the low 255 bits, the sign of x in the top bit."""
    if len(data) != 32:
        return None
    number = int.from_bytes(data, "little")
    sign, y = number >> 255, number & ((1 << 255) - 1)
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P != 0:
        if (v * x * x + u) % P != 0:
            return None
        x = x * SQRT_M1 % P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


_BASE_Y = 4 * pow(5, P - 2, P) % P
BASE = _decode_point(_BASE_Y.to_bytes(32, "little"))


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """§5.1.7: accept iff [8][S]B = [8]R + [8][k]A."""
    a = _decode_point(public_key)
    if a is None or len(signature) != 64 or BASE is None:
        return False
    r = _decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if r is None or s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    left = _multiply(8 * s, BASE)
    right = _multiply(8, _add(r, _multiply(k % L, a)))
    return _same(left, right)


# --- the log's canonical bytes and the Merkle proof (docs/audit.md) -------------------


def canonical_event(event: dict[str, Any]) -> bytes:
    """position (8) | aggregate id (16) | version (8) | topic (4 + n) | state (4 + n)."""
    topic: bytes = event["topic"].encode()
    state = base64.b64decode(event["state"])
    aggregate = uuid.UUID(event["aggregate_id"]).bytes
    head = struct.pack(">q16sqI", event["position"], aggregate, event["version"], len(topic))
    return head + topic + struct.pack(">I", len(state)) + state


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the tree head an audit path leads to, None if it cannot."""
    if not 0 <= index < size:
        return None
    fn, sn, result = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = _node(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = _node(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def statement(checkpoint: dict[str, Any]) -> bytes:
    """The text the checkpoint's signature covers (docs/audit.md)."""
    lines = [
        "crm-collab checkpoint v1",
        f"position {checkpoint['position']}",
        f"tree-size {checkpoint['tree_size']}",
        f"chain-head {checkpoint['chain_head']}",
        f"tree-head {checkpoint['tree_head']}",
        f"signed-at {checkpoint['signed_at']}",
    ]
    return ("\n".join(lines) + "\n").encode()


def check(proof: dict[str, Any], public_key: bytes) -> list[str]:
    """Every reason the proof fails; empty if it holds. `ValueError` for a leaf index or
    tree size that is no count (negative, not a whole number): no proof has one."""
    for field in ("leaf_index", "tree_size"):
        value = proof[field]
        if type(value) is not int or value < 0:
            raise ValueError(f"{field} must be a whole number from 0 up, not {value!r}")
    problems = []
    event, checkpoint = proof["event"], proof["checkpoint"]
    if proof.get("format") != "crm-collab inclusion proof v1":
        problems.append(f"unknown proof format {proof.get('format')!r}")
    if proof["tree_size"] != checkpoint["tree_size"]:
        problems.append("the proof's tree size is not the checkpoint's")
    if event["position"] > checkpoint["position"]:
        problems.append("the event comes after the checkpoint")
    path = [bytes.fromhex(sibling) for sibling in proof["audit_path"]]
    root = root_from_path(proof["leaf_index"], proof["tree_size"], canonical_event(event), path)
    if root is None or root.hex() != checkpoint["tree_head"]:
        problems.append("the audit path does not lead to the checkpoint's tree head")
    if checkpoint["public_key"] != public_key.hex():
        problems.append("the checkpoint names another signing key than the pinned one")
    signature = bytes.fromhex(checkpoint["signature"])
    if not ed25519_verify(public_key, statement(checkpoint), signature):
        problems.append("the checkpoint's signature does not verify under the pinned key")
    return problems


def _public_key(spec: str) -> bytes:
    text = spec.strip()
    if len(text) != 64 and Path(text).is_file():
        text = Path(text).read_text().strip()
    return bytes.fromhex(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("proof", type=Path, help="the JSON printed by `crm audit prove`")
    parser.add_argument("--public-key", required=True, help="64 hex digits, or a file of them")
    args = parser.parse_args(argv)
    try:
        proof = json.loads(args.proof.read_text())
        problems = check(proof, _public_key(args.public_key))
    except (OSError, ValueError, KeyError, TypeError, struct.error, RecursionError) as error:
        # struct.error: a number out of its field's range (a position of 2**64);
        # RecursionError: JSON nested deeper than the parser recurses. Both are input
        # no proof could be, not a proof that failed.
        print(f"unusable input: {error!r}", file=sys.stderr)
        return 2
    event = proof["event"]
    name = f"{event['aggregate_id']} version {event['version']} at position {event['position']}"
    if problems:
        print(f"NOT PROVEN: {name}", *problems, sep="\n  ")
        return 1
    signed = proof["checkpoint"]
    print(f"PROVEN: {name} is in the log signed at {signed['signed_at']}")
    print(f"  ({proof['tree_size']} events, tree head {signed['tree_head']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
