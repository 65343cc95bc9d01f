"""The hash chain and `crm audit verify`, on the SQLite and the PostgreSQL event store.

Every write path links its batch; an untouched log verifies, erasure included; each
kind of tampering an intruder with write access to the tables could do is named at its
position: a flipped byte (edited), a deleted row (deleted), two rows swapped
(reordered), a forged row (inserted), a truncated tail (deleted, against a checkpoint).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from domain.chain_walk import BreakKind
from services.audit_verify import Report
from services.group_commit import GroupCommitter
from tests.integration.audit_support import (
    Audited,
    audited,
    delete_event,
    fill,
    flip_byte,
    forge,
    positions,
    swap,
    truncate,
)
from tests.unit.domain.factories import ctx


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Audited]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with audited(request.param, tmp_path, pg_url) as chained:
        yield chained


def _broken(report: Report) -> tuple[BreakKind, int]:
    assert report.broken is not None, "verify found nothing"
    return report.broken.kind, report.broken.position


def test_every_write_path_links_its_events(store: Audited) -> None:
    customers = fill(store.app)  # app.record: eventsourcing's recorder, several per save

    async def group_commit() -> None:
        committer = GroupCommitter(store.app, window_ms=1, max_batch=3)
        for customer in customers:
            customer.tag(ctx(minutes=50), "silver")
        await asyncio.gather(*(committer.save(customer) for customer in customers))
        await committer.aclose()

    asyncio.run(group_commit())  # PostgreSQL: awaited batch writer; SQLite: writer thread
    for customer in customers[:2]:
        customer.untag(ctx(minutes=55), "silver")
    store.app.save(*customers[:2])  # eventsourcing's own Application.save
    links = store.sql(f"SELECT position, previous FROM {store.chain} ORDER BY position")
    stored = positions(store)
    assert [p for p, _ in links] == stored
    assert [previous for _, previous in links] == [0, *stored[:-1]]
    store.sign()
    report = store.verify()
    assert report.broken is None
    assert (report.events, report.checkpoints) == (len(stored), 1)


def test_an_untouched_log_verifies_after_an_erasure(store: Audited) -> None:
    customers = fill(store.app)
    store.sign()
    erased = customers[1]
    erased.erase(ctx(minutes=60, actor="admin"), reason="GDPR art. 17")
    store.app.record(erased)
    store.app.cipher.erase(erased.id)  # type: ignore[attr-defined]
    store.sign()
    result = store.crm("audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checkpoints  2 matched" in result.stdout
    assert "result       intact" in result.stdout


def test_a_range_ending_before_its_start_is_a_usage_error_not_intact(store: Audited) -> None:
    """`--from 5 --to 2` checked no event and reported the log intact (exit 0)."""
    fill(store.app)
    store.sign()
    reversed_range = store.crm("audit", "verify", "--from", "5", "--to", "2")
    assert (reversed_range.returncode, reversed_range.stdout) == (2, "")
    error = reversed_range.stderr.strip().splitlines()[-1]
    assert error == "crm audit verify: error: --to 2 is before --from 5"
    one_position = store.crm("audit", "verify", "--from", "5", "--to", "5")
    assert "result       intact" in one_position.stdout, one_position.stderr


def test_a_flipped_byte_in_a_payload_is_an_edit(store: Audited) -> None:
    fill(store.app)
    store.sign()
    target = positions(store)[7]
    flip_byte(store, target)
    result = store.crm("audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN: edited at position {target}" in result.stdout


def test_a_deleted_row_is_a_deletion(store: Audited) -> None:
    fill(store.app)
    target = positions(store)[5]
    delete_event(store, target)
    assert _broken(store.verify()) == (BreakKind.DELETED, target)


def test_a_row_deleted_with_its_link_is_a_deletion(store: Audited) -> None:
    fill(store.app)
    target = positions(store)[5]
    delete_event(store, target, with_link=True)
    assert _broken(store.verify()) == (BreakKind.DELETED, target)


def test_two_swapped_rows_are_a_reordering(store: Audited) -> None:
    fill(store.app)
    first, second = positions(store)[3], positions(store)[12]
    swap(store, first, second)
    report = store.verify()
    assert _broken(report) == (BreakKind.REORDERED, first)
    assert report.broken is not None
    assert f"at position {second}" in report.broken.detail


def test_a_forged_row_is_an_insertion(store: Audited) -> None:
    fill(store.app)
    forged = forge(store, like=positions(store)[2])
    assert _broken(store.verify()) == (BreakKind.INSERTED, forged)


def test_a_truncated_tail_is_caught_by_a_checkpoint(store: Audited) -> None:
    fill(store.app)
    signed = store.sign()
    kept = positions(store)[-4]
    truncate(store, kept)
    report = store.verify()
    assert _broken(report) == (BreakKind.DELETED, signed.position)
    assert report.broken is not None
    assert f"the log ends at position {kept}" in report.broken.detail


def test_a_tampered_checkpoint_fails_its_signature(store: Audited) -> None:
    fill(store.app)
    signed = store.sign()
    (document,) = store.sql(f"SELECT checkpoint FROM {store.events}_checkpoints")[0]
    size = f'"tree_size":{signed.tree_size}'.encode()
    altered = bytes(document).replace(size, f'"tree_size":{signed.tree_size - 1}'.encode())
    store.sql(f"UPDATE {store.events}_checkpoints SET checkpoint = ?", altered)
    report = store.verify()
    assert _broken(report) == (BreakKind.EDITED, signed.position)
    assert report.broken is not None
    assert "does not carry a valid signature" in report.broken.detail


def test_verify_checks_a_range(store: Audited) -> None:
    fill(store.app)
    stored = positions(store)
    flip_byte(store, stored[2])
    report = store.verify(start=stored[5], end=stored[-3])
    assert report.broken is None
    assert (report.first, report.last, report.events) == (stored[5], stored[-3], len(stored) - 7)
    assert not report.tree_checked
    assert _broken(store.verify(end=stored[4])) == (BreakKind.EDITED, stored[2])


def test_checkpoints_an_auditor_kept_catch_a_rewrite_hidden_from_the_store(
    store: Audited, tmp_path: Path
) -> None:
    fill(store.app)
    kept = tmp_path / "kept.json"
    kept.write_bytes(msgspec.json.encode({"items": [store.sign()], "next_cursor": None}))
    stored = positions(store)
    truncate(store, stored[-6])
    store.sql(f"DELETE FROM {store.events}_checkpoints")
    assert store.verify().broken is None  # nothing in the store shows it any more
    result = store.crm("audit", "verify", "--checkpoints", str(kept))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN: deleted at position {stored[-1]}" in result.stdout
