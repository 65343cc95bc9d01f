"""The API's event sources (`services.event_source.EventSource`) over SQLite and a real
PostgreSQL: the events of several aggregates asked at once (`events_after_each`, what
concurrent catch-ups of contended commands share) are those each aggregate's own
`events_after` gives, in the order asked, the same aggregate twice included; and
both answer at most the page they are asked for (reads page through histories). A
customer's snapshot stored by one read is what the next cold read starts from."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from structlog.testing import capture_logs

from consumers.keyring import Keyring, MemoryKeyStore
from domain.customer import Customer
from domain.snapshot import TAGS, restored, snapshot
from services import current_state
from services.api.loop_reads import event_source
from services.current_state import CurrentState
from services.event_store import CrmApplication, open_event_store
from services.pg_reads import PostgresReads
from tests.unit.domain.factories import ctx

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CrmApplication, Any]]:
    """An event store, and the API's event source over it."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    app = open_event_store(url, None if url else tmp_path)
    yield app, event_source(app, MemoryKeyStore(), url)
    app.close()


def test_events_of_each_are_each_aggregate_s_own(stored: tuple[CrmApplication, Any]) -> None:
    store, source = stored
    ada, bob = (
        Customer.register(ctx(), customer_id=uuid4(), name=n, email=f"{n}@example.com",
                          owner_department="sales")
        for n in ("ada", "bob")
    )  # fmt: skip
    ada.update_profile(ctx(minutes=1), company="Acme")
    ada.update_profile(ctx(minutes=2), company="Initech")
    bob.update_profile(ctx(minutes=1), company="Globex")
    store.record(ada, bob)
    wanted = [(ada.id, 0), (bob.id, 1), (ada.id, 2), (bob.id, 2), (uuid4(), 0), (ada.id, 1)]

    async def scenario() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        each = await source.events_after_each(wanted, 100)
        firsts = await source.events_after_each(wanted, 1)
        alone = [await source.events_after(i, version, 100) for i, version in wanted]
        pages = [await source.events_after(ada.id, after, 2) for after in (0, 2, 3)]
        if isinstance(source, PostgresReads):
            await source.aclose()  # its connections belong to this loop
        return list(each), alone, pages, list(firsts)

    each, alone, pages, firsts = asyncio.run(scenario())

    versions = [[(e.originator_id, e.originator_version) for e in events] for events in each]
    assert versions == [
        [(ada.id, 1), (ada.id, 2), (ada.id, 3)], [(bob.id, 2)], [(ada.id, 3)], [], [],
        [(ada.id, 2), (ada.id, 3)],
    ]  # fmt: skip
    assert [list(events) for events in each] == [list(events) for events in alone]
    assert [[e.originator_version for e in page] for page in pages] == [[1, 2], [3], []]
    assert [list(events) for events in firsts] == [list(events)[:1] for events in each]


def _long_customer(store: CrmApplication, monkeypatch: pytest.MonkeyPatch) -> Customer:
    """A customer of 26 events stored, read 10 at a time, snapshotted every 10 versions."""
    monkeypatch.setattr(current_state, "READ_PAGE", 10)
    monkeypatch.setattr(current_state, "SNAPSHOT_EVERY", 10)
    ada = Customer.register(ctx(), customer_id=uuid4(), name="Ada", owner_department="sales")
    for n in range(25):  # versions 2-26
        ada.update_profile(ctx(minutes=n), company=f"Company {n}")
    store.record(ada)
    return ada


def test_a_cold_read_of_a_long_history_starts_from_the_newest_snapshot_stored(
    stored: tuple[CrmApplication, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first read of a history longer than a page stores a snapshot; the next process
    to read it cold asks once for the snapshot and what came after it, and gets the
    state the whole history gives. A snapshot stored twice is stored once; storing one
    removes the older ones."""
    store, source = stored
    ada = _long_customer(store, monkeypatch)
    asked: list[tuple[str, int]] = []
    events_after, from_snapshot = source.events_after, source.from_snapshot

    async def recorded_events(aggregate_id: UUID, version: int, limit: int) -> Any:
        asked.append(("events", version))
        return await events_after(aggregate_id, version, limit)

    async def recorded_snapshot(aggregate_id: UUID, limit: int) -> Any:
        found, after = await from_snapshot(aggregate_id, limit)
        asked.append(("from snapshot", 0 if found is None else found.originator_version))
        return found, after

    async def scenario() -> tuple[Customer, Customer, Any, Any, Any, list[int], list[Any]]:
        none_yet = await source.from_snapshot(ada.id, 10)
        first = await CurrentState(source, Keyring(MemoryKeyStore())).load(Customer, ada.id)
        for n in range(3):  # versions 27-29
            ada.update_profile(ctx(minutes=30 + n), company=f"Later {n}")
        store.record(ada)
        monkeypatch.setattr(source, "events_after", recorded_events)
        monkeypatch.setattr(source, "from_snapshot", recorded_snapshot)
        again = await CurrentState(source, Keyring(MemoryKeyStore())).load(Customer, ada.id)
        newest, after_it = await from_snapshot(ada.id, 10)
        await source.put_snapshot(newest)  # a second read racing the first: no error
        await source.put_snapshot(StoredEvent(ada.id, 29, newest.topic, snapshot(again)))
        kept, _ = await from_snapshot(ada.id, 10)
        alone = [s.originator_version for s in store.snapshot_recorder.select_events(ada.id)]
        await source.put_snapshot(newest)  # an older one after it: the newest stays newest
        last, none_after = await from_snapshot(ada.id, 10)
        if isinstance(source, PostgresReads):
            await source.aclose()  # its connections belong to this loop
        pages = [none_yet, (newest, after_it), (last, none_after)]
        return first, again, newest, kept, last, alone, pages

    first, again, newest, kept, last, alone, pages = asyncio.run(scenario())

    assert [(found, [e.originator_version for e in after]) for found, after in pages] == [
        (None, list(range(1, 11))),  # no snapshot yet: the first page of the history
        (newest, [27, 28, 29]),
        (last, []),
    ]
    assert (newest.originator_version, newest.topic) == (26, TAGS[Customer])
    assert restored(Customer, newest.state) == first
    assert asked == [("from snapshot", 26)]  # one question: the snapshot, 27-29 after it
    assert (again.version, again.company) == (29, "Later 2")
    assert again == store.sealed_load(Customer, ada.id)
    assert (kept.originator_version, last.originator_version) == (29, 29)
    assert alone == [29]  # storing 29 removed 26
    versions = [s.originator_version for s in store.snapshot_recorder.select_events(ada.id)]
    assert versions == [26, 29]  # the older removed when 29 came; 26 stored again after


REFUSE_SNAPSHOTS = {  # a store that cannot take a snapshot (its disk full, say)
    "postgres": [
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'no room'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON crm_snapshots"
        " FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON stored_snapshots"
        " BEGIN SELECT RAISE(FAIL, 'no room'); END",
    ],
}


def test_a_snapshot_the_store_refuses_leaves_the_read_whole(
    stored: tuple[CrmApplication, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, source = stored
    backend = "postgres" if isinstance(source, PostgresReads) else "sqlite"
    recorder: Any = store.snapshot_recorder
    with recorder.datastore.transaction(commit=True) as cursor:
        for statement in REFUSE_SNAPSHOTS[backend]:
            cursor.execute(statement)
    ada = _long_customer(store, monkeypatch)

    async def scenario() -> Customer:
        read = await CurrentState(source, Keyring(MemoryKeyStore())).load(Customer, ada.id)
        if isinstance(source, PostgresReads):
            await source.aclose()
        return read

    with capture_logs() as logs:
        read = asyncio.run(scenario())

    assert read == store.sealed_load(Customer, ada.id)
    assert store.snapshot_recorder.select_events(ada.id) == []
    if backend == "postgres":  # SQLite reports RAISE as a conflict: a version stored already
        (logged,) = [entry for entry in logs if entry["event"] == "snapshot not stored"]
        assert (logged["aggregate"], logged["version"]) == (str(ada.id), 26)
