"""The stand-alone proof verifier in docs/audit: standard library only, and agreeing with
the project's own code (canonical bytes, RFC 9162 paths) and with OpenSSL's Ed25519.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from uuid import UUID

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import merkle
from domain.hashchain import canonical_event

SCRIPT = Path(__file__).resolve().parents[3] / "docs" / "audit" / "verify_proof.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_proof", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verifier = _load()

# RFC 8032 §7.1, tests 1-3: (public key, message, signature)
RFC_8032 = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


def test_the_script_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


@pytest.mark.parametrize(("public", "message", "signature"), RFC_8032)
def test_rfc_8032_vectors_verify(public: str, message: str, signature: str) -> None:
    key, text, signed = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert verifier.ed25519_verify(key, text, signed)
    assert not verifier.ed25519_verify(key, text + b"\x00", signed)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=511))
def test_signatures_agree_with_openssl(message: bytes, flipped_bit: int) -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    signature = private.sign(message)
    assert verifier.ed25519_verify(public, message, signature)
    forged = bytearray(signature)
    forged[flipped_bit // 8] ^= 1 << (flipped_bit % 8)
    assert not verifier.ed25519_verify(public, message, bytes(forged))


@settings(deadline=None)  # a timing check, flaky on a shared machine
@given(
    st.integers(min_value=1, max_value=2**40),
    st.uuids(),
    st.integers(min_value=1, max_value=10**6),
    st.text(max_size=30),
    st.binary(max_size=200),
)
def test_canonical_bytes_agree_with_the_project(
    position: int, aggregate: UUID, version: int, topic: str, state: bytes
) -> None:
    event = {
        "position": position,
        "aggregate_id": str(aggregate),
        "version": version,
        "topic": topic,
        "state": base64.b64encode(state).decode(),
    }
    expected = canonical_event(position, aggregate, version, topic, state)
    assert verifier.canonical_event(event) == expected


@settings(deadline=None)  # a timing check, flaky on a shared machine
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_audit_paths_agree_with_the_project(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1))
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    path = merkle.inclusion_path(index, len(leaves), hashes)
    assert verifier.root_from_path(index, len(leaves), leaves[index], path) == merkle.tree_head(
        leaves
    )


def _proof(position: int, leaf_index: object = 0) -> dict[str, object]:
    """A proof of the right shape whose event has `position` (nothing in it holds)."""
    checkpoint = {
        "position": 1, "tree_size": 1, "chain_head": "00" * 32, "tree_head": "00" * 32,
        "signed_at": "2026-01-01T00:00:00Z", "public_key": "00" * 32, "signature": "00" * 64,
    }  # fmt: skip
    event = {
        "position": position, "aggregate_id": str(UUID(int=1)), "version": 1,
        "topic": "t", "state": "",
    }  # fmt: skip
    return {
        "format": "crm-collab inclusion proof v1", "event": event, "leaf_index": leaf_index,
        "tree_size": 1, "audit_path": [], "checkpoint": checkpoint,
    }  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(_proof(2**64)),  # struct.error: no position is that large
        "[" * 100_000 + "]" * 100_000,  # RecursionError in the JSON parser
    ],
    ids=["position-2**64", "deeply-nested"],
)
def test_crafted_input_is_unusable_not_unproven(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proof = tmp_path / "proof.json"
    proof.write_text(text)
    assert verifier.main([str(proof), "--public-key", "00" * 32]) == 2
    assert "unusable input" in capsys.readouterr().err


@pytest.mark.parametrize("leaf_index", [-1, -(2**70), 0.5, True, "0"])
def test_a_leaf_index_that_is_no_count_is_unusable(
    leaf_index: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proof = tmp_path / "proof.json"
    proof.write_text(json.dumps(_proof(1, leaf_index)))
    assert verifier.main([str(proof), "--public-key", "00" * 32]) == 2
    assert "leaf_index must be a whole number from 0 up" in capsys.readouterr().err
