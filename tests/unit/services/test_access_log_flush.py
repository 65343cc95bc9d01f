"""A flush stores every queued record, in order, `BATCH` records an append at most (the
writer holds the GIL while it prepares an append); an append that fails leaves its
records and every later one queued, in order, for the next flush."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from services.access import Principal, Role
from services.access_log import BATCH, AccessLog, decode
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
