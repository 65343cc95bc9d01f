"""`crm audit verify-access` sees the access log's tail removed (the embedded SQLite store).

Before, an intruder who deleted the last records (their own reads, say) left a chain
that still verified. Now a store ending below the position the relay recorded as
published is a deletion; an intruder who lowers that row too, or rewrites a record and
relinks the chain after it (links are not keyed), is caught against what the relay
published to Kafka.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.kafka_records import Record
from domain.chain_walk import BreakKind
from domain.hashchain import GENESIS, chain_rows
from services.access_kafka import AccessKafkaComparison
from services.access_log import AccessRecord, AccessStore, canonical, encode
from services.access_log_store import SqliteAccessStore
from services.access_topic import access_topic
from services.cli_audit_access import verify_access
from tests.unit.services.test_access_kafka import access_record

TOPIC = access_topic("p.")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteAccessStore]:
    """Five records, all published."""
    access = SqliteAccessStore(tmp_path / "access.db")
    access.append([access_record(n) for n in range(1, 6)])
    access.mark_published(TOPIC, 5)
    yield access
    access.close()


def _sql(tmp_path: Path, statement: str, *params: object) -> None:
    with closing(sqlite3.connect(tmp_path / "access.db", isolation_level=None)) as db:
        db.execute(statement, params)


def _published(store: SqliteAccessStore) -> list[Record]:
    """What the relay sent to Kafka: the stored records, key = position."""
    rows = store.records(0, 100)
    return [Record(TOPIC, 0, p - 1, str(p).encode(), record) for p, record in rows]


def _remove_tail(tmp_path: Path, after: int) -> None:
    _sql(tmp_path, "DELETE FROM crm_access_log WHERE position > ?", after)
    _sql(tmp_path, "DELETE FROM crm_access_subjects WHERE position > ?", after)


def test_a_tail_removed_below_the_published_position_is_a_deletion(
    store: SqliteAccessStore, tmp_path: Path
) -> None:
    assert verify_access(store) == (5, None)
    _remove_tail(tmp_path, 3)
    count, broken = verify_access(store)
    assert broken is not None
    assert (count, broken.kind, broken.position) == (3, BreakKind.DELETED, 5)
    assert "the store ends at 3" in broken.detail
    assert "lower crm_access_published as well" in broken.detail


def test_the_highest_published_position_of_any_topic_prefix_counts(
    store: SqliteAccessStore, tmp_path: Path
) -> None:
    _sql(tmp_path, "UPDATE crm_access_published SET position = 2")
    store.mark_published(access_topic("other."), 4)
    _remove_tail(tmp_path, 3)
    broken = verify_access(store)[1]
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.DELETED, 4)


def test_a_tail_not_yet_published_may_be_missing_unseen(
    store: SqliteAccessStore, tmp_path: Path
) -> None:
    """The relay had published up to 3: records 4 and 5 were on no witness."""
    _sql(tmp_path, "UPDATE crm_access_published SET position = 3")
    _remove_tail(tmp_path, 3)
    assert verify_access(store) == (3, None)


def test_with_the_published_row_lowered_too_only_kafka_shows_the_deletion(
    store: SqliteAccessStore, tmp_path: Path
) -> None:
    on_kafka = _published(store)
    _remove_tail(tmp_path, 3)
    _sql(tmp_path, "UPDATE crm_access_published SET position = 3")
    assert verify_access(store) == (3, None)
    broken = verify_access(store, [AccessKafkaComparison(on_kafka)])[1]
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.DELETED, 4)
    assert "which now ends at 3" in broken.detail


def test_a_published_record_rewritten_and_relinked_is_an_edit_on_kafka(
    store: SqliteAccessStore, tmp_path: Path
) -> None:
    on_kafka = _published(store)
    _rewrite(store, tmp_path, 2)
    assert verify_access(store) == (5, None)  # the chain, relinked, holds
    broken = verify_access(store, [AccessKafkaComparison(on_kafka)])[1]
    assert broken is not None
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 2)
    assert "differs from access record 2 as stored" in broken.detail


def test_records_as_published_verify_with_kafka(store: SqliteAccessStore) -> None:
    comparison = AccessKafkaComparison(_published(store) * 2)  # everything sent twice
    assert verify_access(store, [comparison]) == (5, None)
    assert comparison.records == 10


def rewritten(store: AccessStore, position: int) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Record `position` made to show other fields, and every link from it on recomputed,
    as anyone with write access can (links are not keyed; the columns queries filter on
    are left as they are): the new record, and (position, chain) of each new link."""
    rows = store.records(position - 1, 100)  # `position` and those after it
    record = msgspec.json.decode(rows[0][1], type=AccessRecord)
    rows[0] = (position, encode(msgspec.structs.replace(record, fields=["phone"])))
    head = store.links(position - 2, position - 1)[0][2] if position > 1 else GENESIS
    canonicals = [canonical(p, r) for p, r in rows]
    links = chain_rows(position - 1, head, [p for p, _ in rows], canonicals)
    return rows[0][1], [(linked, chain) for linked, _, chain in links]


def _rewrite(store: SqliteAccessStore, tmp_path: Path, position: int) -> None:
    record, links = rewritten(store, position)
    _sql(tmp_path, "UPDATE crm_access_log SET record = ? WHERE position = ?", record, position)
    for linked, chain in links:
        _sql(tmp_path, "UPDATE crm_access_log SET chain = ? WHERE position = ?", chain, linked)


@pytest.mark.parametrize("value", ["x", b"\x00", "1e400", "", -1])
def test_a_published_row_that_is_no_position_is_a_break_not_a_traceback(
    store: SqliteAccessStore, tmp_path: Path, value: object
) -> None:
    """SQLite's INTEGER column takes text (ranked above every number by `max`): an
    intruder's value made verify-access end in a ValueError (red team)."""
    store.mark_published(access_topic("other."), 2)
    _sql(tmp_path, "UPDATE crm_access_published SET position = ? WHERE topic = ?", value, TOPIC)
    count, broken = verify_access(store)
    assert broken is not None
    assert (count, broken.kind) == (0, BreakKind.EDITED)
    assert "is no position" in broken.detail


class GrowingStore:
    """The store, with records stored by the API between the walk's reads of a page's
    entries and of their links (a busy log: 12 runs of 12 said "deleted", red team)."""

    def __init__(self, store: SqliteAccessStore) -> None:
        self.store = store
        self.entries = store.entries
        self.misfiled = store.misfiled
        self.highest_published = store.highest_published
        self.last_position = store.last_position

    def links(self, after: int, upto: int) -> list[tuple[int, int, bytes]]:
        self.store.append([access_record(6)])
        return self.store.links(after, upto)


def test_records_stored_during_the_walk_are_no_break(store: SqliteAccessStore) -> None:
    busy: Any = GrowingStore(store)  # the reads verify_access makes
    count, broken = verify_access(busy)
    assert (count, broken) == (5, None)  # the log as it stood when the walk began
