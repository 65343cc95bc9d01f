"""Inclusion proofs, checkpoints and `seal-existing`, on the SQLite and PostgreSQL stores.

A proof from `crm audit prove` passes the stand-alone verifier in `docs/audit/` (run as
a separate, dependency-free Python) and fails once one byte of the event changes. The
checkpointer signs every N events or T seconds, continues from its saved Merkle
frontier, and refuses to sign over a break. `seal-existing` chains a log recorded
before the chain, once, and never rewrites a signed one.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.chain_walk import BreakKind
from services.checkpointer import Checkpointer, CheckpointRefused
from tests.integration.audit_support import ROOT, Audited, audited, fill, flip_byte, positions
from tests.unit.domain.factories import ctx

VERIFIER = ROOT / "docs" / "audit" / "verify_proof.py"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Audited]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with audited(request.param, tmp_path, pg_url) as chained:
        yield chained


def _offline(
    proof: dict[str, object], key: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The verifier as an auditor runs it: plain python3, no project, no database."""
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    return subprocess.run(
        [sys.executable, "-I", str(VERIFIER), str(path), "--public-key", key],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_proof_passes_offline_and_fails_when_one_byte_changes(
    store: Audited, tmp_path: Path
) -> None:
    customers = fill(store.app)
    store.sign()
    customers[2].tag(ctx(minutes=70), "late")
    store.app.record(customers[2])
    store.sign()
    key = store.crm("audit", "public-key").stdout.strip()
    for version in (1, 3):
        proved = store.crm("audit", "prove", str(customers[2].id), str(version))
        assert proved.returncode == 0, proved.stderr
        proof = json.loads(proved.stdout)
        passed = _offline(proof, key, tmp_path)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert passed.stdout.startswith("PROVEN: ")
    state = bytearray(base64.b64decode(proof["event"]["state"]))
    state[len(state) // 2] ^= 0x01
    proof["event"]["state"] = base64.b64encode(bytes(state)).decode()
    failed = _offline(proof, key, tmp_path)
    assert failed.returncode == 1
    assert "the audit path does not lead to the checkpoint's tree head" in failed.stdout


def test_a_proof_fails_under_another_key_or_a_forged_checkpoint(
    store: Audited, tmp_path: Path
) -> None:
    customers = fill(store.app)
    store.sign()
    proof = json.loads(store.crm("audit", "prove", str(customers[0].id), "1").stdout)
    assert _offline(proof, "ab" * 32, tmp_path).returncode == 1
    proof["checkpoint"]["signed_at"] = "2000-01-01T00:00:00.000000+00:00"
    forged = _offline(proof, store.key.public_key.hex(), tmp_path)
    assert forged.returncode == 1
    assert "signature does not verify" in forged.stdout


def test_prove_refuses_when_the_store_no_longer_gives_the_signed_tree(store: Audited) -> None:
    customers = fill(store.app)
    store.sign()
    flip_byte(store, positions(store)[0])
    refused = store.crm("audit", "prove", str(customers[3].id), "1")
    assert refused.returncode == 1
    assert "no longer gives the tree head" in refused.stderr


def test_prove_needs_a_checkpoint_covering_the_event(store: Audited) -> None:
    customers = fill(store.app)
    refused = store.crm("audit", "prove", str(customers[0].id), "1")
    assert refused.returncode == 1
    assert "no signed checkpoint covers position" in refused.stderr


def test_checkpoints_continue_from_the_saved_frontier(store: Audited) -> None:
    customers = fill(store.app)
    first = store.sign()
    for customer in customers:
        customer.tag(ctx(minutes=80), "x")
        store.app.record(customer)
    second = store.sign()
    assert second.tree_size == first.tree_size + len(customers)
    report = store.verify()
    assert report.broken is None
    assert report.checkpoints == 2


def test_checkpoints_are_due_every_n_events_or_t_seconds(store: Audited) -> None:
    fill(store.app)
    by_count = Checkpointer(store.log, store.key, every_events=6, every_seconds=3600)
    assert by_count.due()  # none yet
    by_count.tick()
    assert not by_count.due()
    fill(store.app, customers=1)  # 5 events
    assert not by_count.due()
    fill(store.app, customers=1)
    assert by_count.due()
    later = datetime.now(UTC) + timedelta(seconds=61)
    by_time = Checkpointer(store.log, store.key, every_events=10**6, every_seconds=60)
    assert not by_time.due()
    in_a_minute = Checkpointer(
        store.log, store.key, every_events=10**6, every_seconds=60, clock=lambda: later
    )
    assert in_a_minute.due()
    in_a_minute.tick()
    assert not in_a_minute.due()  # nothing new, however long ago


def test_the_checkpointer_refuses_to_sign_over_a_break(store: Audited) -> None:
    fill(store.app)
    store.sign()
    target = positions(store)[-1]
    fill(store.app, customers=1)
    flip_byte(store, positions(store)[-2])
    with pytest.raises(CheckpointRefused, match="not signing: edited at position"):
        store.sign()
    assert len(store.log.checkpoints()) == 1
    assert target < positions(store)[-2]


def test_seal_existing_chains_a_log_recorded_before_the_chain(store: Audited) -> None:
    fill(store.app)
    store.sql(f"DELETE FROM {store.chain}")  # as if recorded by the code before the chain
    report = store.verify()
    assert report.broken is not None
    assert report.broken.kind is BreakKind.INSERTED
    assert "seal-existing" in report.broken.detail
    with pytest.raises(CheckpointRefused, match="has no chain link"):
        store.sign()
    sealed = store.crm("audit", "seal-existing")
    assert sealed.returncode == 0, sealed.stderr
    assert f"chained {len(positions(store))} events" in sealed.stdout
    fill(store.app, customers=1)  # new events continue the sealed chain
    store.sign()
    assert store.verify().broken is None
    again = store.crm("audit", "seal-existing")
    assert "nothing to seal" in again.stdout


def test_seal_existing_never_rewrites_a_signed_chain(store: Audited) -> None:
    fill(store.app)
    store.sign()
    store.sql(f"DELETE FROM {store.chain} WHERE position = ?", positions(store)[4])
    refused = store.crm("audit", "seal-existing")
    assert refused.returncode == 1
    assert "checkpoints are already signed" in refused.stderr
