"""An event stored below position 1 (red-team finding F1 of session 29).

The application reads an aggregate by its id and versions, whatever their positions;
the walks read positions 1 and up. So a row written at position 0 or below (a next
event of a customer, giving it another owner and a share) became the customer's state
while `crm audit verify` said "intact" and the signer signed on. Now every verify, of
any range, reports it as inserted (exit 1), and the signer refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.chain_walk import BreakKind
from domain.customer import Customer
from services.checkpointer import CheckpointRefused
from tests.integration.audit_support import Audited, audited, fill, hide


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Audited]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with audited(request.param, tmp_path, pg_url) as chained:
        yield chained


@pytest.mark.parametrize("position", [0, -7])
def test_an_event_below_position_one_is_an_insertion(store: Audited, position: int) -> None:
    victim = fill(store.app)[1]
    store.sign()
    hide(store, victim.id, position)
    assert store.app.load(Customer, victim.id).owner_department == "marketing"  # it is read
    report = store.verify()
    assert report.broken is not None, "verify passed over the hidden events"
    assert (report.broken.kind, report.broken.position) == (BreakKind.INSERTED, position - 1)
    assert f"CustomerShared of {victim.id} version 5" in report.broken.detail
    assert report.events == 20  # the walk itself was whole
    result = store.crm("audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN: inserted at position {position - 1}" in result.stdout


def test_a_verify_of_any_range_reports_it(store: Audited) -> None:
    victim = fill(store.app)[0]
    store.sign()
    hide(store, victim.id, 0)
    for start, end in ((5, None), (None, 10), (12, 15)):
        broken = store.verify(start=start, end=end).broken
        assert broken is not None, (start, end)
        assert (broken.kind, broken.position) == (BreakKind.INSERTED, -1)


def test_the_signer_refuses_to_sign_over_it(store: Audited) -> None:
    victim = fill(store.app)[2]
    store.sign()
    fill(store.app, customers=2)  # something new to sign
    hide(store, victim.id, 0)
    with pytest.raises(CheckpointRefused, match="inserted at position -1"):
        store.sign()
    assert store.log.latest_checkpoint() is not None
    assert store.log.latest_checkpoint()[0].position == 20  # type: ignore[index]
