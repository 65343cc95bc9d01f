"""The checkpoint signer trusts only what it keeps beside its key, on both stores.

Red-team findings: an intruder with write access to the database rewrote an event,
recomputed the (public, unkeyed) chain and deleted the checkpoint rows, and the signer
signed the rewritten log with the real key (F1); a lost key file was silently replaced
by a new key, orphaning every earlier checkpoint (F3); one undecodable checkpoint row
ended the signer's thread for good while `/readyz` said ready (F7).
"""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from domain.hashchain import chain_rows
from services.api.readiness import SignerWatch
from services.audit_keys import load_or_create, signature_valid
from services.audit_log import END
from services.audit_seal import seal_existing
from services.checkpointer import Checkpointer, CheckpointRefused
from services.signer_memory import adopt, record_path
from tests.integration.audit_support import Audited, audited, fill, flip_byte, positions


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Audited]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with audited(request.param, tmp_path, pg_url) as chained:
        yield chained


def _checkpoints(store: Audited) -> str:
    return f"{store.events}_checkpoints"


def _rewrite_and_rechain(store: Audited, position: int) -> None:
    """F1: edit an event, drop the checkpoints, chain the whole log again (SHA-256 is
    public; `seal_existing` does exactly that once no checkpoint is left)."""
    flip_byte(store, position)
    store.sql(f"DELETE FROM {_checkpoints(store)}")
    store.sql(f"DELETE FROM {store.chain}")
    assert seal_existing(store.log) == len(positions(store))


def test_a_rewritten_history_with_its_checkpoints_deleted_is_not_signed(store: Audited) -> None:
    fill(store.app)
    store.sign()
    _rewrite_and_rechain(store, positions(store)[1])
    assert store.verify().broken is None  # the store alone no longer tells
    fill(store.app, customers=1)
    with pytest.raises(CheckpointRefused, match="rewritten together with its chain"):
        store.sign()
    assert store.log.checkpoints() == []


def test_deleted_checkpoint_rows_over_an_intact_log_are_put_back(store: Audited) -> None:
    fill(store.app)
    first = store.sign()
    store.sql(f"DELETE FROM {_checkpoints(store)}")  # or a crash between record and row
    fill(store.app, customers=1)
    second = store.sign()
    assert [c.position for c in store.log.checkpoints()] == [first.position, second.position]
    assert second.tree_size == len(positions(store))
    assert store.verify().broken is None


def test_a_newest_row_the_key_did_not_sign_is_refused(store: Audited, tmp_path: Path) -> None:
    fill(store.app)
    real = store.sign()
    intruder = load_or_create(tmp_path / "intruder.key")
    fill(store.app, customers=1)
    claimed = msgspec.structs.replace(real, position=positions(store)[-1])
    forged = msgspec.structs.replace(
        claimed,
        public_key=intruder.public_key.hex(),
        signature=intruder.sign(claimed.statement()).hex(),
    )
    store.log.add_checkpoint(forged, b"")
    with pytest.raises(CheckpointRefused, match="not signed by this signer's key"):
        store.sign()
    assert len(store.log.checkpoints()) == 2


def test_a_key_without_its_record_refuses_until_it_adopts_a_verified_store(
    store: Audited,
) -> None:
    fill(store.app)
    store.sign()
    record_path(store.key).unlink()  # an upgrade from a release without one, or lost
    fill(store.app, customers=1)
    with pytest.raises(CheckpointRefused, match="no record of what it signed"):
        store.sign()
    adopted = adopt(store.log, store.key)
    assert adopted.checkpoint == store.log.checkpoints()[-1]
    assert store.sign().tree_size == len(positions(store))
    assert store.verify().broken is None


def test_adopting_never_takes_the_record_back_over_a_rewrite(store: Audited) -> None:
    """Red team, second round: with the newest checkpoint row deleted and the log
    rewritten after the one before, the signer refused, and `adopt` then took the older
    checkpoint as its record, after which the rewrite was signed."""
    fill(store.app)
    first = store.sign()
    fill(store.app, customers=2)
    second = store.sign()
    store.sql(f"DELETE FROM {_checkpoints(store)} WHERE position = ?", second.position)
    flip_byte(store, next(p for p in positions(store) if p > first.position))
    _rechain_after(store, first.position, first.chain_head)
    with pytest.raises(CheckpointRefused):
        store.sign()
    assert store.verify().broken is None  # the store alone no longer tells
    with pytest.raises(CheckpointRefused, match="past the store's newest checkpoint"):
        adopt(store.log, store.key)
    assert msgspec.json.decode(record_path(store.key).read_bytes())["checkpoint"]["position"] == (
        second.position
    )


def test_a_record_behind_the_store_walks_on_through_the_newer_checkpoint(
    store: Audited,
) -> None:
    fill(store.app)
    store.sign()
    behind = record_path(store.key).read_bytes()  # a second signer sharing the key
    fill(store.app, customers=1)
    store.sign()
    record_path(store.key).write_bytes(behind)
    fill(store.app, customers=1)
    assert store.sign().tree_size == len(positions(store))
    record_path(store.key).write_bytes(behind)
    remembered = msgspec.json.decode(behind)["checkpoint"]
    flip_byte(store, store.log.checkpoints()[-1].position)  # beyond the record, up to the
    _rechain_after(store, remembered["position"], remembered["chain_head"])  # newest
    with pytest.raises(CheckpointRefused, match="has another chain head"):
        store.sign()


def _rechain_after(store: Audited, position: int, head: str) -> None:
    entries = store.log.entries(position, END, 1 << 20)
    store.sql(f"DELETE FROM {store.chain} WHERE position > ?", position)
    links = chain_rows(
        position, bytes.fromhex(head), [p for p, _ in entries], [c for _, c in entries]
    )
    with store.log.exclusive() as locked:
        locked.append_links(links)


def test_the_record_lies_beside_the_key_readable_by_its_owner_only(store: Audited) -> None:
    fill(store.app)
    signed = store.sign()
    path = record_path(store.key)
    assert path.parent == store.key.path.parent
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signature_valid(store.key.public_key, signed)
    assert signed.position.__str__() in path.read_text()


def test_a_lost_key_is_not_replaced_once_the_store_holds_checkpoints(
    store: Audited, tmp_path: Path
) -> None:
    fill(store.app)
    store.sign()
    key_file = Path(store.env["CRM_AUDIT_KEY_FILE"])
    moved = key_file.rename(tmp_path / "elsewhere.key")
    fill(store.app, customers=1)
    refused = store.crm("audit", "checkpoint")
    assert refused.returncode == 1, refused.stdout
    assert "there is no signing key at" in refused.stderr
    assert "restore the key file" in refused.stderr
    printing = store.crm("audit", "public-key")  # made a new key to print it, too
    assert printing.returncode == 1, printing.stdout
    assert "there is no signing key at" in printing.stderr
    assert not key_file.exists()
    moved.rename(key_file)
    again = store.crm("audit", "checkpoint")
    assert again.returncode == 0, again.stderr
    assert store.verify().broken is None


def test_an_upgraded_store_is_adopted_once_through_the_cli(store: Audited) -> None:
    """A store signed by a release that kept no record: the signer refuses it until the
    operator adopts its newest checkpoint, which verifies the log first."""
    fill(store.app)
    store.sign()
    record_path(store.key).unlink()
    fill(store.app, customers=1)
    refused = store.crm("audit", "checkpoint")
    assert refused.returncode == 1
    assert "no record of what it signed" in refused.stderr
    flip_byte(store, positions(store)[1])
    broken = store.crm("audit", "checkpoint", "--adopt")
    assert broken.returncode == 1
    assert "not adopting" in broken.stderr, broken.stderr
    assert not record_path(store.key).exists()
    flip_byte(store, positions(store)[1])  # back as it was
    adopted = store.crm("audit", "checkpoint", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert msgspec.json.decode(adopted.stdout)["position"] == store.log.checkpoints()[-1].position
    signed = store.crm("audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    assert store.verify().broken is None


def test_a_new_store_gets_its_key_with_its_first_checkpoint(store: Audited) -> None:
    assert not store.key.path.exists()
    fill(store.app)
    store.sign()
    assert stat.S_IMODE(store.key.path.stat().st_mode) == 0o600
    assert record_path(store.key).exists()


def _until(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_signer_thread_outlives_an_undecodable_row_and_readiness_says_so(
    store: Audited,
) -> None:
    fill(store.app)
    signer = Checkpointer(store.log, store.key, every_events=1, every_seconds=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=signer.run, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        assert _until(lambda: len(store.log.checkpoints()) == 1)
        insert = f"INSERT INTO {_checkpoints(store)} (position, checkpoint, frontier)"
        store.sql(f"{insert} VALUES (?, ?, ?)", 1_000_000, b"not json", b"")
        assert _until(lambda: signer.status.in_a_row >= 3)
        assert thread.is_alive()
        watch = SignerWatch(store.log, 0.05)
        problem = watch.check()
        assert problem is not None
        assert "failing" in problem
        assert "DecodeError" in problem
        store.sql(f"DELETE FROM {_checkpoints(store)} WHERE position = ?", 1_000_000)
        fill(store.app, customers=1)
        assert _until(lambda: store.log.checkpoints()[-1].tree_size == len(positions(store)))
        assert _until(lambda: watch.check() is None)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert signer.status.failures >= 3
