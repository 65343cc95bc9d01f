"""The notification log read in pages bounded in bytes, on PostgreSQL and SQLite.

`select_notifications_within` is the relay's and the embedded follower's page read: the
database stops a page at the event whose stored state brings it to the budget, so a
page of the largest events (~350 kB each) never reaches the reader whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from psycopg import sql

from services.event_store import CrmApplication, open_event_store

pytestmark = pytest.mark.integration
BUDGET = 1_000
SIZES = [100, 700, 50, 3_000, 10, 10, 10, 900, 400, 2_500, 999, 1, 1_000, 1, 1]
"""Stored states' sizes: rows that cross the budget, a row alone over it, and a tail."""


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CrmApplication]:
    if request.param == "sqlite":
        app = open_event_store(None, tmp_path)
    else:
        app = open_event_store(request.getfixturevalue("pg_url"), None)
    yield app
    app.close()


def insert(app: CrmApplication, sizes: Sequence[int]) -> None:
    """One event per size, each in its own transaction (stored states of those bytes)."""
    for size in sizes:
        app.recorder.insert_events(
            [StoredEvent(uuid4(), 1, "Customer.Tagged@1", bytes([size % 251]) * size)]
        )


def pages(app: CrmApplication, limit: int, budget: int) -> list[Sequence[Any]]:
    """The whole log read page after page, as the relay reads it."""
    found, start = [], 1
    while page := app.recorder.select_notifications_within(start, limit, budget):  # type: ignore[attr-defined]
        found.append(page)
        start = page[-1].id + 1
    return found


def assert_within(found: list[Sequence[Any]], limit: int, budget: int) -> None:
    """Every page is at most `limit` rows, under `budget` bar its last row, and every page
    but the last stopped for a reason: `limit` rows, or its last row reached `budget`."""
    for page in found:
        sizes = [len(n.state) for n in page]
        assert len(page) <= limit
        assert sum(sizes[:-1]) < budget, sizes
    for page in found[:-1]:
        assert len(page) == limit or sum(len(n.state) for n in page) >= budget


def test_pages_stop_at_the_budget_in_order_none_skipped(store: CrmApplication) -> None:
    insert(store, SIZES)
    everything = store.recorder.select_notifications(start=1, limit=100)
    found = pages(store, 2_000, BUDGET)
    assert [n for page in found for n in page] == everything
    assert [[len(n.state) for n in page] for page in found] == [
        [100, 700, 50, 3_000],  # the row that crosses the budget ends the page
        [10, 10, 10, 900, 400],
        [2_500],  # a row alone over the budget: a page of its own
        [999, 1],
        [1_000],
        [1, 1],
    ]
    assert_within(found, 2_000, BUDGET)
    assert_within(pages(store, 3, BUDGET), 3, BUDGET)  # `limit` still bounds the rows
    assert [n for page in pages(store, 3, BUDGET) for n in page] == everything
    assert [len(p) for p in pages(store, 2_000, 10**9)] == [len(SIZES)]  # a plain page
    assert [len(p) for p in pages(store, 2_000, 0)] == [1] * len(SIZES)  # a row at least
    assert store.recorder.select_notifications_within(len(SIZES) + 1, 10, BUDGET) == []  # type: ignore[attr-defined]


def test_an_id_a_rollback_drew_is_read_past(pg_url: str) -> None:
    """As the plain read does: the ids after the position are read in order, and one
    that a rolled-back insert drew is simply not there."""
    app = open_event_store(pg_url, None)
    try:
        insert(app, [600, 600])
        with psycopg.connect(pg_url) as conn:  # draws id 3, then rolls back
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state)"
                    " VALUES (%s, 1, 't', '\\x00')"
                ).format(app.recorder.events_table),  # type: ignore[attr-defined]
                (uuid4(),),
            )
            conn.rollback()
        insert(app, [600, 600, 600])
        found = pages(app, 2_000, BUDGET)
        assert [[n.id for n in page] for page in found] == [[1, 2], [4, 5], [6]]
        assert [n for page in found for n in page] == app.recorder.select_notifications(1, 10)
    finally:
        app.close()
