"""`verify_log` with checkpoints from a channel anyone may write (Kafka's topic).

Any client with produce rights can write `crm.audit.checkpoints.v1`. A checkpoint read
there that the pinned key did not sign is ignored (counted, its position named) and the
walk uses the ones that verify: one junk record must neither hide a truncation the
genuine checkpoints catch, nor fail every later verify. A badly signed checkpoint the
store holds, or the auditor's own file, stays a break. The embedded SQLite store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from uuid import uuid4

import msgspec
import pytest

from consumers.key_stores import SqliteKeyStore
from consumers.keyring import Keyring
from domain.chain_walk import BreakKind
from domain.checkpoint import Checkpoint
from domain.customer import Customer
from services.audit_keys import SigningKey, load_or_create
from services.audit_log import AuditLog, open_audit_log
from services.audit_verify import IGNORED_NAMED, Report, verify_log
from services.checkpointer import Checkpointer
from services.cli_audit_support import exit_code, summary
from services.event_store import open_event_store
from tests.unit.domain.factories import ctx


class Store:
    """A chained SQLite store of 12 events, signed at its head."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.db"
        self.app = open_event_store(None, tmp_path, Keyring(SqliteKeyStore(tmp_path / "k.db")))
        self.log: AuditLog = open_audit_log(self.app)
        self.key: SigningKey = load_or_create(tmp_path / "audit.key")
        for n in range(6):
            customer = Customer.register(
                ctx(minutes=n), customer_id=uuid4(), name=f"C {n}", owner_department="sales"
            )
            customer.tag(ctx(minutes=n), "gold")
            self.app.record(customer)
        signed = Checkpointer(self.log, self.key, every_events=1, every_seconds=1).checkpoint()
        assert signed is not None
        self.signed: Checkpoint = signed

    def sql(self, statement: str, *params: object) -> None:
        with closing(sqlite3.connect(self.path, isolation_level=None)) as db:
            db.execute(statement, params)

    def truncate_and_hide(self, keep: int) -> None:
        """The intruder: events after `keep`, their links and the stored checkpoints gone."""
        self.sql("DELETE FROM stored_events WHERE rowid > ?", keep)
        self.sql("DELETE FROM stored_events_chain WHERE position > ?", keep)
        self.sql("DELETE FROM stored_events_checkpoints")

    def verify(
        self, untrusted: list[Checkpoint], evidence: list[Checkpoint] | None = None
    ) -> Report:
        stored = self.log.checkpoints() if evidence is None else evidence
        return verify_log(self.log, stored, self.key.public_key, untrusted=untrusted)

    def close(self) -> None:
        self.log.close()
        self.app.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path)
    yield opened
    opened.close()


def _broken(report: Report) -> tuple[BreakKind, int] | None:
    return None if report.broken is None else (report.broken.kind, report.broken.position)


def junk(checkpoint: Checkpoint, **changes: object) -> Checkpoint:
    """What anyone with produce rights can write: a checkpoint the key did not sign."""
    return msgspec.structs.replace(checkpoint, **{"signature": "00" * 64, **changes})


def test_a_junk_checkpoint_does_not_hide_a_truncation_the_genuine_one_catches(
    store: Store,
) -> None:
    store.truncate_and_hide(keep=store.signed.position - 4)
    report = store.verify([junk(store.signed, position=1), store.signed])
    assert _broken(report) == (BreakKind.DELETED, store.signed.position)
    assert (report.ignored, report.ignored_positions) == (1, [1])
    assert report.events == store.signed.position - 4  # walked, not returned early
    assert exit_code(report) == 1


def test_a_junk_copy_of_a_genuine_checkpoint_does_not_stand_in_for_it(store: Store) -> None:
    """Same position and heads, only the signature changed, read after the genuine one:
    merging copies before checking signatures kept the junk one."""
    store.truncate_and_hide(keep=store.signed.position - 4)
    report = store.verify([store.signed, junk(store.signed)])
    assert _broken(report) == (BreakKind.DELETED, store.signed.position)
    assert report.ignored == 1


def test_over_an_intact_log_a_junk_checkpoint_is_a_warning_not_a_break(store: Store) -> None:
    report = store.verify([junk(store.signed, position=3)])
    assert report.broken is None
    assert (report.checkpoints, report.signed_upto) == (1, store.signed.position)
    assert exit_code(report) == 0
    text = summary(report)
    assert "checkpoints  1 matched, 1 ignored" in text
    assert "warning      1 checkpoints on Kafka do not carry a valid signature" in text
    assert "claiming positions 3)" in text
    assert "result       intact" in text


def test_a_flood_of_junk_is_counted_and_only_the_first_positions_named(store: Store) -> None:
    flood = (junk(store.signed, position=n) for n in range(1, 1001))
    report = store.verify(list(flood))
    assert report.broken is None
    assert report.ignored == 1000
    assert report.ignored_positions == list(range(1, IGNORED_NAMED + 1))
    assert "claiming positions 1, 2, 3, 4, 5, ...)" in summary(report)


def test_a_badly_signed_checkpoint_in_the_evidence_stays_a_break(store: Store) -> None:
    """The store's (or the auditor's file's) checkpoint with its signature altered is a
    break, even when Kafka carries the genuine one."""
    tampered = junk(store.signed)
    report = store.verify([store.signed], evidence=[tampered])
    assert _broken(report) == (BreakKind.EDITED, store.signed.position)
    assert report.broken is not None
    assert "does not carry a valid signature" in report.broken.detail
    assert report.ignored == 0
