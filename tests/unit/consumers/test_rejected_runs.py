"""Rejected records as runs (`consumers.rejected_runs`): rows bounded, count exact.

A producer chooses how many records are rejected; each one a row (per projection) grew
PostgreSQL ~22 times faster than the Kafka log. Consecutive rejections of a partition
with the same claimed position and reason are one row, and a generation keeps its
newest `ROWS` rows. `Table` below is what both adapters do with `joined`'s answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from consumers.readmodel_store import Rejected
from consumers.rejected_runs import ROWS, Run, StoredRun, joined, runs

JUNK = "InvalidEnvelope: not a CloudEvent: JSON is malformed"


def rejected(partition: int, offset: int, reason: str = JUNK, position: int = 0) -> Rejected:
    return Rejected("t", partition, offset, position, reason)


class Table:
    """A `_rejected` table: rows by id; a batch deletes the rows its runs take in,
    inserts its runs, keeps the newest `ROWS` (as `pg_session`/`sqlite_session`)."""

    def __init__(self) -> None:
        self.rows: dict[int, Run] = {}
        self.count = 0
        self._next = 1

    def add(self, records: Sequence[Rejected]) -> None:
        newest: dict[tuple[str, int], StoredRun] = {}
        for row_id, run in sorted(self.rows.items()):
            newest[(run.topic, run.partition)] = StoredRun(row_id, run)
        written, taken = joined(runs(records), newest)
        for row_id in taken:
            del self.rows[row_id]
        for run in written:
            self.rows[self._next], self._next = run, self._next + 1
        for row_id in sorted(self.rows)[:-ROWS]:
            del self.rows[row_id]
        self.count += len(records)

    def runs(self) -> list[tuple[int, int, int, int, str, int]]:
        """Each row without its time, oldest first."""
        return [
            (r.partition, r.first_offset, r.last_offset, r.position, r.reason, r.records)
            for _, r in sorted(self.rows.items())
        ]


def test_the_same_junk_in_a_partition_is_one_row_however_many_records() -> None:
    table = Table()
    for start in range(0, 50_000, 5000):  # batches of 5,000, three partitions
        table.add([rejected(n % 3, n // 3) for n in range(start, start + 5000)])
    assert table.count == 50_000
    assert sorted(table.runs()) == [
        (0, 0, 16666, 0, JUNK, 16667),
        (1, 0, 16666, 0, JUNK, 16667),
        (2, 0, 16665, 0, JUNK, 16666),
    ]


def test_another_reason_or_position_starts_a_run_and_a_run_is_placed_by_its_last_record() -> None:
    records = [
        rejected(0, 0), rejected(0, 1), rejected(1, 0, "other"), rejected(0, 2, "other"),
        rejected(0, 3, "other", position=9), rejected(1, 1, "other"),
    ]  # fmt: skip
    assert [(r.partition, r.first_offset, r.last_offset, r.records) for r in runs(records)] == [
        (0, 0, 1, 2), (0, 2, 2, 1), (0, 3, 3, 1), (1, 0, 1, 2),
    ]  # fmt: skip


def test_only_a_partitions_first_run_in_a_batch_continues_its_newest_row() -> None:
    table = Table()
    table.add([rejected(0, 0, "a")])
    table.add([rejected(0, 1, "b"), rejected(0, 2, "a")])  # "a" again, but not consecutive
    assert table.runs() == [(0, 0, 0, 0, "a", 1), (0, 1, 1, 0, "b", 1), (0, 2, 2, 0, "a", 1)]
    table.add([rejected(0, 3, "a"), rejected(1, 0, "a")])
    assert table.runs() == [
        (0, 0, 0, 0, "a", 1), (0, 1, 1, 0, "b", 1), (0, 2, 3, 0, "a", 2), (1, 0, 0, 0, "a", 1),
    ]  # fmt: skip


def test_a_continued_run_keeps_its_first_time() -> None:
    stored = StoredRun(7, Run("t", 0, 0, 4, 0, JUNK, 5, at="2024-01-01 00:00:00"))
    (row,), taken = joined(runs([rejected(0, 9)]), {("t", 0): stored})
    assert taken == [7]
    assert row == Run("t", 0, 0, 9, 0, JUNK, 6, at="2024-01-01 00:00:00")


def test_rows_are_capped_and_the_newest_kept_while_every_record_is_counted() -> None:
    table = Table()
    table.add([rejected(0, n, f"claims position {n}") for n in range(ROWS + 500)])
    table.add([rejected(1, n, f"other {n}") for n in range(300)])
    assert table.count == ROWS + 800
    assert len(table.rows) == ROWS
    assert table.runs()[0][4] == "claims position 800"  # the oldest kept
    assert table.runs()[-1][4] == "other 299"


def test_a_reason_is_compared_as_stored() -> None:
    """A NUL cannot be stored: `Rejected.values()` escapes it, and runs hold that."""
    (run,) = runs([rejected(0, 0, "a\x00"), rejected(0, 1, "a\\x00")])
    assert (run.reason, run.records) == ("a\\x00", 2)


records_strategy = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["a", "b"]), st.sampled_from([0, 5])),
    max_size=60,
)


@given(records_strategy, st.lists(st.integers(1, 20), min_size=1, max_size=10))
def test_rows_do_not_depend_on_how_records_were_batched(
    claims: list[tuple[int, str, int]], sizes: list[int]
) -> None:
    """A rebuild reads the same records in other batches: it keeps the same rows."""
    offsets = [0, 0, 0]
    records = []
    for partition, reason, position in claims:
        records.append(rejected(partition, offsets[partition], reason, position))
        offsets[partition] += 1
    whole, batched = Table(), Table()
    whole.add(records)
    start, turn = 0, 0
    while start < len(records):
        size = sizes[turn % len(sizes)]
        batched.add(records[start : start + size])
        start, turn = start + size, turn + 1
    assert sorted(batched.runs()) == sorted(whole.runs())
    assert batched.count == whole.count == len(records)
