"""A flush stores every queued record, in order, `BATCH` records an append at most (the
writer holds the GIL while it prepares an append); an append that fails leaves its
records and every later one queued, in order, for the next flush; past `PENDING_MAX`
unstored records, a read that would show personal data is refused, not queued."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog

from services import access_log
from services.access.rules import Principal, Role
from services.access_log import BATCH, AccessLog, AccessLogBacklogged, decode
from services.access_log_store import SqliteAccessStore

WHO = Principal(name="max", department="sales", role=Role.MANAGER)


class CountedStore(SqliteAccessStore):
    """The SQLite store, telling how many records each append got; `failing` appends
    raise before storing anything."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.appends: list[int] = []
        self.failing = 0

    def append(self, records: Sequence[bytes]) -> None:
        if self.failing:
            self.failing -= 1
            raise ConnectionError("the store is away")
        self.appends.append(len(records))
        super().append(records)


def _revealed(log: AccessLog, count: int) -> list[uuid.UUID]:
    customers = [uuid.uuid4() for _ in range(count)]
    for customer in customers:
        log.reveal(WHO, "GET /v1/customers/{customer_id}", {customer: ["email"]})
    return customers


def _stored(store: SqliteAccessStore) -> list[uuid.UUID]:
    return [decode(p, r).record.customers[0] for p, r in store.records(0, 10 * BATCH)]


def test_a_flush_stores_everything_queued_in_batches_in_order(tmp_path: Path) -> None:
    store = CountedStore(tmp_path / "access.db")
    log = AccessLog(store)
    customers = _revealed(log, 2 * BATCH + 3)
    log.flush()
    assert store.appends == [BATCH, BATCH, 3]
    assert _stored(store) == customers
    assert log.pending() == 0
    store.close()


def test_a_failed_append_keeps_its_records_and_the_later_ones_queued(tmp_path: Path) -> None:
    store = CountedStore(tmp_path / "access.db")
    log = AccessLog(store)
    customers = _revealed(log, BATCH + 10)
    store.failing = 1
    with pytest.raises(ConnectionError):
        log.flush()
    assert log.pending() == BATCH + 10
    later = _revealed(log, 2)
    log.flush()
    assert _stored(store) == customers + later
    store.close()


def test_past_pending_max_unstored_records_a_reveal_is_refused_until_they_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_log, "PENDING_MAX", 5)
    store = CountedStore(tmp_path / "access.db")
    log = AccessLog(store)
    store.failing = 1
    customers = _revealed(log, 5)
    with pytest.raises(ConnectionError):
        log.flush()  # a full disk, say
    assert log.backlog() == "5 access records wait to be stored; reads of personal data are refused"
    with pytest.raises(AccessLogBacklogged):
        _revealed(log, 1)
    log.reveal(WHO, "GET /v1/customers/{customer_id}", {uuid.uuid4(): []})  # shows nothing
    assert log.pending() == 5
    log.flush()
    assert log.backlog() is None
    later = _revealed(log, 1)
    log.flush()
    assert _stored(store) == customers + later  # each once, none lost, none refused stored
    store.close()


def test_the_writer_logs_a_refusing_store_once_when_lost_and_once_when_back(
    tmp_path: Path,
) -> None:
    """An outage of the store (PostgreSQL away) is one line down and one back, as the
    relay's and consumers' are, not a line at every attempt (ten a second here)."""
    store = CountedStore(tmp_path / "access.db")
    log = AccessLog(store, flush_seconds=0.01)
    store.failing = 20
    customers = _revealed(log, 3)
    with structlog.testing.capture_logs() as lines:
        log.start()
        deadline = time.monotonic() + 30
        while store.failing or log.pending():
            assert time.monotonic() < deadline, "the writer never stored the records"
            time.sleep(0.01)
        log.stop()
    outage = [(line["event"], line["dependency"]) for line in lines if "dependency" in line]
    assert outage == [
        ("dependency lost", "access log store"),
        ("dependency back", "access log store"),
    ]
    assert _stored(store) == customers
    store.close()
