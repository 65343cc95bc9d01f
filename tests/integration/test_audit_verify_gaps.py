"""What `crm audit verify` must not pass over (red-team findings F4, F5, F6, F8).

* F5: a row the application no longer reads as the event the chain links (an id spelled
  otherwise, a cell of another type) is an edit, though its bytes still give its link;
* F4: the events after the last signed checkpoint are counted, a walk that no
  checkpoint anchors is not plainly "intact" (exit 3), and on PostgreSQL a head below
  the relay's published position is a deletion;
* F6: pages are cut by the bytes of the states, not only by a count of events;
* F8: a checkpoint that failed is not counted as matched; bad key files and a state
  cell turned TEXT are answers, not tracebacks; `checkpoint > file` is a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from consumers.relay_position import PostgresRelayPosition
from domain import checkpoint as checkpoints
from domain.chain_walk import BreakKind
from services.audit_log import pages
from services.audit_verify import Report, verify_log
from services.bootstrap import connect_pool
from tests.integration.audit_support import Audited, audited, fill, positions, truncate


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Audited]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with audited(request.param, tmp_path, pg_url) as chained:
        yield chained


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Audited]:
    with audited("sqlite", tmp_path, None) as chained:
        yield chained


def _broken(report: Report) -> tuple[BreakKind, int]:
    assert report.broken is not None, "verify found nothing"
    return report.broken.kind, report.broken.position


# --- F5: a row not in its stored form -------------------------------------------------


@pytest.mark.parametrize(
    ("column", "spelled"),
    [
        ("originator_id", "upper(originator_id)"),  # the red team's: hides the event
        ("originator_id", "' ' || originator_id"),  # bytes.fromhex skips spaces too
        ("state", "CAST(state AS TEXT)"),  # was a TypeError
        ("originator_version", "originator_version + 0.5"),  # REAL
        ("topic", "CAST(topic AS BLOB)"),
    ],
)
def test_a_row_respelled_so_the_application_misses_it_is_an_edit(
    sqlite_store: Audited, column: str, spelled: str
) -> None:
    fill(sqlite_store.app)
    sqlite_store.sign()
    target = positions(sqlite_store)[5]
    sqlite_store.sql(f"UPDATE stored_events SET {column} = {spelled} WHERE rowid = ?", target)
    report = sqlite_store.verify()
    assert _broken(report) == (BreakKind.EDITED, target)
    assert report.broken is not None
    assert "not stored as the store writes it" in report.broken.detail
    assert report.events == 5  # the rows before it were walked
    result = sqlite_store.crm("audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN: edited at position {target}" in result.stdout


def test_the_respelled_event_is_named_by_its_aggregate(sqlite_store: Audited) -> None:
    customers = fill(sqlite_store.app)
    (target,) = sqlite_store.sql(
        "SELECT min(rowid) FROM stored_events WHERE originator_id = ?", customers[2].id.hex
    )[0]
    sqlite_store.sql(
        "UPDATE stored_events SET originator_id = upper(originator_id) WHERE rowid = ?", target
    )
    report = sqlite_store.verify()
    assert report.broken is not None
    assert str(customers[2].id) in report.broken.detail
    assert customers[2].id.hex.upper() in report.broken.detail


# --- F4: what no signature covers -----------------------------------------------------


def test_verify_counts_the_events_after_the_last_signed_checkpoint(store: Audited) -> None:
    fill(store.app)
    signed = store.sign()
    fill(store.app, customers=2)
    stored = positions(store)
    truncate(store, stored[-3])  # a tidy intruder: two unsigned events and their links
    report = store.verify()
    assert report.broken is None
    assert (report.signed_upto, report.unsigned) == (
        signed.position,
        len(stored) - 2 - len([p for p in stored if p <= signed.position]),
    )
    result = store.crm("audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"unsigned     {report.unsigned} events after the last signed checkpoint"
        f" (position {signed.position}), not yet signed"
    ) in result.stdout


def test_a_store_no_checkpoint_anchors_is_not_plainly_intact(store: Audited) -> None:
    empty = store.crm("audit", "verify", "--public-key", store.key.public_key.hex())
    assert empty.returncode == 3, empty.stdout + empty.stderr
    assert "intact but UNSIGNED" in empty.stdout
    fill(store.app)
    store.sign()
    assert store.crm("audit", "verify").returncode == 0
    wiped = (store.events, store.chain, f"{store.events}_checkpoints")
    for table in wiped:
        store.sql(f"DELETE FROM {table}")
    result = store.crm("audit", "verify")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no signed checkpoint" in result.stdout


def test_a_head_below_what_the_relay_published_is_a_deletion(pg_url: str, tmp_path: Path) -> None:
    with audited("postgres", tmp_path, pg_url) as store:
        fill(store.app)
        store.sign()
        fill(store.app, customers=2)
        stored = positions(store)
        pool = connect_pool(pg_url)
        try:
            PostgresRelayPosition(pool).save(stored[-1])
        finally:
            pool.close()
        assert store.verify().broken is None
        truncate(store, stored[-4])  # unsigned, but the relay had published them
        assert _broken(store.verify()) == (BreakKind.DELETED, stored[-1])
        result = store.crm("audit", "verify")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "the relay already published" in result.stdout


# --- F6: pages cut by bytes ------------------------------------------------------------


def test_pages_are_cut_by_the_bytes_of_their_states(store: Audited) -> None:
    fill(store.app)
    stored = positions(store)
    walked = list(pages(store.log, size=5000, max_bytes=1))
    assert [len(entries) for entries, _ in walked] == [1] * len(stored)  # one row at least
    assert [e[0] for entries, _ in walked for e in entries] == stored
    assert [k[0] for _, links in walked for k in links] == stored
    whole = list(pages(store.log, size=5000, max_bytes=1 << 30))
    assert [len(entries) for entries, _ in whole] == [len(stored)]
    assert store.log.entries(0, stored[3], 5000, 1) == store.log.entries(0, stored[0], 1)
    assert store.log.entries(stored[-2], stored[-2], 5000, 1 << 30) == []  # upto holds


# --- F8: answers, not tracebacks ---------------------------------------------------------


def test_a_checkpoint_that_fails_is_not_counted_as_matched(store: Audited) -> None:
    fill(store.app)
    good = store.sign()
    forged = msgspec.structs.replace(good, chain_head="00" * 32)  # signed, but wrong
    forged = msgspec.structs.replace(forged, signature=store.key.sign(forged.statement()).hex())
    report = verify_log(store.log, [forged], store.key.public_key)
    assert _broken(report) == (BreakKind.EDITED, good.position)
    assert report.checkpoints == 0


def test_an_unreadable_public_key_is_a_usage_error(store: Audited, tmp_path: Path) -> None:
    bad_pem = tmp_path / "bad.pem"
    bad_pem.write_text("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
    binary = tmp_path / "binary.key"
    binary.write_bytes(bytes(range(256)))
    for key in (bad_pem, binary):
        result = store.crm("audit", "verify", "--public-key", str(key))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr


def test_checkpoint_to_a_file_writes_a_checkpoint_the_verify_reads(
    store: Audited, tmp_path: Path
) -> None:
    fill(store.app)
    signed = store.crm_with({"CRM_LOG_FORMAT": "json"}, "audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    (line,) = signed.stdout.splitlines()
    kept = tmp_path / "kept.jsonl"
    kept.write_text(signed.stdout)
    assert checkpoints.decode(line).position == positions(store)[-1]
    result = store.crm("audit", "verify", "--checkpoints", str(kept))
    assert result.returncode == 0, result.stdout + result.stderr
    assert msgspec.json.decode(line)["tree_size"] == len(positions(store))
