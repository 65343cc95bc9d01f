"""The embedded event store's head read on the API loop's own connection
(`services.sqlite_recorder.HeadReader`): the same answer as eventsourcing's
`max_notification_id`, every commit seen at once, no read transaction left open (one
would pin the WAL), nothing written; none for a store in memory."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import ApplicationRecorder

from domain.base import Context
from domain.customer import Customer
from services.event_store import CrmApplication, open_event_store
from services.sqlite_recorder import HeadReader

CTX = Context(
    actor="sam", actor_department="sales", occurred_at=datetime.now(UTC), correlation_id="t"
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[CrmApplication]:
    app = open_event_store(None, tmp_path)
    yield app
    app.close()


def _reader(app: CrmApplication) -> HeadReader:
    reader = HeadReader.of(app.recorder)
    assert reader is not None
    return reader


def _register(app: CrmApplication, changes: int = 0) -> None:
    ada = Customer.register(
        CTX, customer_id=uuid4(), name="Ada", email="ada@example.com", owner_department="sales"
    )
    for n in range(changes):
        ada.update_profile(CTX, company=f"Acme {n}")
    app.save(ada)


def test_the_head_is_the_recorders_and_every_commit_shows_at_once(app: CrmApplication) -> None:
    reader = _reader(app)
    assert reader() == 0  # nothing stored
    _register(app, changes=2)
    assert reader() == app.recorder.max_notification_id() == 3
    _register(app)  # committed after the reader's last read, on another connection
    assert reader() == app.recorder.max_notification_id() == 4
    reader.close()


def test_no_read_transaction_is_left_open_between_reads(
    app: CrmApplication, tmp_path: Path
) -> None:
    reader = _reader(app)
    _register(app)
    reader()
    _register(app)  # frames in the WAL a read left open would pin
    with sqlite3.connect(tmp_path / "events.db") as other:
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    reader.close()


def test_it_writes_nothing(app: CrmApplication) -> None:
    reader = _reader(app)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._conn.execute("DELETE FROM stored_events")
    reader.close()


def test_none_for_a_store_in_memory() -> None:
    app = open_event_store(None, None)  # eventsourcing's POPO recorder
    assert isinstance(app.recorder, ApplicationRecorder)
    assert HeadReader.of(app.recorder) is None
