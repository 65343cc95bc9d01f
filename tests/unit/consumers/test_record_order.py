"""A projection applies each aggregate's versions one after another.

The relay publishes an aggregate's events in order to one partition, maybe more than
once. A genuine record copied into another partition or topic passes the check
against the event store (it is what the store holds); read before the versions it
follows, it used to be applied and make them "already applied", so they were lost.
Now it is rejected, and the genuine records apply in their turn. Rejected records
(refused by the check, or out of order) are recorded apart from dead letters: they
lack nothing in the read model. Text a record chose (a reason quotes its `type`) is
made storable.
"""

from __future__ import annotations

from uuid import UUID

from consumers.projecting import Item, project
from consumers.readmodel_store import storable
from domain.base import DomainEvent
from projections import PROJECTIONS
from tests.unit.domain.factories import ctx, customer
from tests.unit.projections.memory import MemorySession

SHARED = PROJECTIONS["shared"]


def _history() -> list[DomainEvent]:
    """A customer registered (version 1), tagged gold (2) and vip (3)."""
    ada = customer()
    for minutes, tag in ((5, "gold"), (6, "vip")):
        ada.tag(ctx(minutes=minutes), tag)
    return list(ada.collect_events())


def _item(event: DomainEvent, partition: int, offset: int) -> Item:
    return Item("crm.customer.v1", partition, offset, event.originator_version, b"", event)


def _built(items: list[Item], *, retry: bool = False) -> MemorySession:
    session = MemorySession(SHARED)
    project(session, SHARED, items, retry=retry)
    return session


def _tags(session: MemorySession) -> str:
    (row,) = session.tables["customers"].values()
    return str(row["tags"])


def test_a_copy_read_before_the_versions_it_follows_is_rejected_and_they_apply() -> None:
    registered, gold, vip = _history()
    genuine = [_item(registered, 0, 0), _item(gold, 0, 1), _item(vip, 0, 2)]
    copy = _item(vip, 1, 0)  # the same record, produced into partition 1
    session = _built([genuine[0], copy, *genuine[1:]])
    assert session.tables == _built(genuine).tables
    assert _tags(session) == "gold,vip"
    (rejected,) = session.rejected
    assert (rejected.partition, rejected.offset, rejected.position) == (1, 0, 3)
    assert rejected.reason.startswith(
        f"out of order: version 3 of aggregate {registered.originator_id} before version 2"
    )
    assert session.dead == []
    assert session.applied == {registered.originator_id: 3}


def test_repeats_are_skipped_and_a_copy_read_after_is_one() -> None:
    history = _history()
    genuine = [_item(e, 0, n) for n, e in enumerate(history)]
    session = _built([*genuine, _item(history[1], 0, 3), _item(history[2], 1, 0)])
    assert session.tables == _built(genuine).tables
    assert (session.rejected, session.dead) == ([], [])


def test_a_refused_record_is_rejected_not_a_dead_letter_and_touches_nothing() -> None:
    registered, gold, _ = _history()
    refused = Item("crm.customer.v1", 2, 7, 0, b"{}", None, "not as stored", refused=True)
    session = _built([_item(registered, 0, 0), refused, _item(gold, 0, 1)])
    assert _tags(session) == "gold"
    assert session.dead == []
    assert [(r.partition, r.offset, r.reason) for r in session.rejected] == [
        (2, 7, "not as stored")
    ]
    assert session.applied == {registered.originator_id: 2}
    assert session.offsets == {("crm.customer.v1", 0): 2, ("crm.customer.v1", 2): 8}


def test_a_genuine_record_that_does_not_decode_takes_its_version() -> None:
    registered, gold, vip = _history()
    aggregate: UUID = registered.originator_id
    undecodable = Item(
        "crm.customer.v1", 0, 1, 2, b"?", None, "UnknownEventType", origin=(aggregate, 2)
    )
    again = undecodable._replace(offset=3)  # the relay sent it twice
    session = _built([_item(registered, 0, 0), undecodable, _item(vip, 0, 2), again])
    assert _tags(session) == "vip"
    (letter,) = session.dead
    assert (letter.aggregate_id, letter.aggregate_version, letter.error) == (
        aggregate, 2, "UnknownEventType",
    )  # fmt: skip
    assert session.rejected == []
    retried = session
    project(retried, SHARED, [_item(gold, 0, 1)], retry=True)  # after an upgrade decodes it
    assert (_tags(retried), retried.dead, retried.applied) == ("gold,vip", [], {aggregate: 3})


def test_a_retry_applies_a_dead_letter_behind_later_versions() -> None:
    registered, gold, vip = _history()
    session = _built([_item(registered, 0, 0), _item(vip, 0, 2)], retry=True)
    project(session, SHARED, [_item(gold, 0, 1)], retry=True)
    assert (_tags(session), session.rejected) == ("gold,vip", [])


def test_text_a_record_chose_is_made_storable() -> None:
    assert storable("plain") == "plain"
    assert storable("a\x00b") == "a\\x00b"
    assert storable("\ud800 é") == "\\ud800 é"
    assert storable("x" * 5000) == "x" * 2000
