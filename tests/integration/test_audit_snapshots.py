"""A snapshot written behind the application's back (red-team finding F2 of session 29).

A read from nothing starts from an aggregate's newest snapshot, so a forged one (a
customer shared with marketing, a consent nobody gave) was the state every read and
access decision used, while `crm audit verify` said "intact". Now a verify of the whole
log checks every snapshot against the events: one that differs, or that names a version
the events do not reach, is an edit (exit 1); genuine ones pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain.chain_walk import BreakKind
from domain.conversation import Conversation
from domain.customer import Customer
from tests.integration.audit_support import Audited, audited, fill, put_snapshot
from tests.unit.domain.factories import ctx


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Audited]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with audited(request.param, tmp_path, pg_url) as chained:
        yield chained


def _snapshotted(store: Audited) -> list[Customer]:
    """A filled, signed store with a genuine snapshot of every aggregate, some of them
    at an older version than the newest (a later one beside it), as reads leave them."""
    customers = fill(store.app)
    for customer in customers:
        put_snapshot(store, store.app.sealed_load(Customer, customer.id, version=2))
        put_snapshot(store, store.app.sealed_load(Customer, customer.id))
    put_snapshot(store, store.app.sealed_load(Conversation, _conversation(store)))
    store.sign()
    return customers


def test_genuine_snapshots_are_intact(store: Audited) -> None:
    _snapshotted(store)
    report = store.verify()
    assert report.broken is None, report.broken
    result = store.crm("audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_forged_snapshot_at_the_current_version_is_an_edit(store: Audited) -> None:
    victim = _snapshotted(store)[3]
    forged = store.app.sealed_load(Customer, victim.id)
    forged.shared_with = {"marketing"}
    forged.consents = {"email_marketing": True}
    store.sql("DELETE FROM " + _snapshots(store) + " WHERE originator_version = 3")
    put_snapshot(store, forged)
    assert store.app.load(Customer, victim.id).shared_with == set()  # the events' state
    broken = store.verify().broken
    assert broken is not None, "verify passed over the forged snapshot"
    position = store.log.position_of(victim.id, 3)
    assert (broken.kind, broken.position) == (BreakKind.EDITED, position)
    assert f"snapshot of customer {victim.id} at version 3" in broken.detail
    assert "differs from its events in shared_with, consents" in broken.detail
    result = store.crm("audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN: edited at position {position}" in result.stdout


@pytest.mark.parametrize("version", [4, 99])
def test_a_snapshot_beyond_the_events_is_an_edit(store: Audited, version: int) -> None:
    victim = _snapshotted(store)[1]
    forged = store.app.sealed_load(Customer, victim.id)
    forged.owner_department = "marketing"
    put_snapshot(store, forged, version=version)
    broken = store.verify().broken
    assert broken is not None, "verify passed over the forged snapshot"
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 0)
    assert "names a version its events do not reach (it has events up to version 3)" in (
        broken.detail
    )


def test_a_snapshot_of_an_aggregate_without_events_is_an_edit(store: Audited) -> None:
    _snapshotted(store)
    invented = Customer.register(
        ctx(), customer_id=uuid4(), name="Nobody", email="n@example.com",
        owner_department="marketing",
    )  # fmt: skip
    put_snapshot(store, invented)
    broken = store.verify().broken
    assert broken is not None
    assert f"snapshot of customer {invented.id} at version 1" in broken.detail
    assert "(it has no event)" in broken.detail


def test_a_snapshot_of_another_kind_or_shape(store: Audited) -> None:
    customers = _snapshotted(store)
    store.sql(f"UPDATE {_snapshots(store)} SET topic = 'customer.v0.old'")  # never read: passed
    assert store.verify().broken is None
    talk = store.app.sealed_load(Conversation, _conversation(store))
    store.sql(f"DELETE FROM {_snapshots(store)}")
    talk.id = customers[0].id  # a conversation's state under a customer's id
    talk.version = 3
    put_snapshot(store, talk)
    broken = store.verify().broken
    assert broken is not None
    assert "is a conversation's, but its events are a customer's" in broken.detail


def test_a_snapshot_that_does_not_decode_is_an_edit(store: Audited) -> None:
    victim = _snapshotted(store)[0]
    _at_version_3(store, victim.id, "UPDATE {table} SET state = ?", b'{"id": 1}')
    broken = store.verify().broken
    assert broken is not None
    assert "does not decode" in broken.detail


def test_a_snapshot_row_holding_no_version_or_no_state_is_an_edit(tmp_path: Path) -> None:
    """SQLite keeps text in an INTEGER column and NULL anywhere: a row with the version
    `'x'` (the newest a reader finds: text sorts after numbers) or no state is reported,
    not a crash of verify (review)."""
    with audited("sqlite", tmp_path, None) as store:
        victim = _snapshotted(store)[0]
        state = store.app.sealed_load(Customer, victim.id)
        _at_version_3(store, victim.id, "UPDATE {table} SET state = NULL")
        broken = store.verify().broken
        assert broken is not None
        assert "does not decode" in broken.detail
        _at_version_3(store, victim.id, "DELETE FROM {table}")
        put_snapshot(store, state)  # genuine again: verify passes
        assert store.verify().broken is None
        _at_version_3(store, victim.id, "UPDATE {table} SET originator_version = 'x'")
        broken = store.verify().broken
        assert broken is not None
        assert "names the version 'x'" in broken.detail
        result = store.crm("audit", "verify")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_a_verify_of_a_range_does_not_replay(store: Audited) -> None:
    victim = _snapshotted(store)[1]
    forged = store.app.sealed_load(Customer, victim.id)
    put_snapshot(store, forged, version=50)
    assert store.verify(start=1).broken is None  # a range is the chain's check only
    assert store.verify().broken is not None


def _snapshots(store: Audited) -> str:
    return "crm_snapshots" if store.backend == "postgres" else "stored_snapshots"


def _at_version_3(store: Audited, customer: UUID, statement: str, *params: object) -> None:
    """`statement` (its table `{table}`) on `customer`'s snapshot row at version 3."""
    stored_id = customer if store.backend == "postgres" else customer.hex
    where = " WHERE originator_version = 3 AND originator_id = ?"
    store.sql(statement.format(table=_snapshots(store)) + where, *params, stored_id)


def _conversation(store: Audited) -> UUID:
    (row,) = store.sql(
        f"SELECT DISTINCT originator_id FROM {store.events} WHERE topic LIKE ?", "Conversation%"
    )
    return row[0] if isinstance(row[0], UUID) else UUID(row[0])
