"""Rejected records kept as runs: rows bounded, the count exact.

Whoever can produce to the topics chooses how many records the consumers reject, and a
row for each (per projection) grew without end: 50,000 one-byte records, 2.5 MB of
Kafka log, made 250,000 `_rejected` rows, 56 MB in PostgreSQL, beside the event store.
So a generation's `_rejected` table holds *runs*:

* consecutive rejections in one partition that claim the same position for the same
  reason are one row: its first and last offset and how many records (other records
  of the partition between them may have applied). A run goes on across batches: a
  batch's first rejection of a partition extends the partition's newest row when it
  continues it, and the row becomes the newest of the table;
* the table keeps its newest `ROWS` rows; older ones are deleted as newer ones come.

The count, `_status.rejected` (`crm projections status`, `/metrics`
`crm_projection_rejected_records`), is still one per record: exact, whatever the rows
keep. A record's bytes stay on its topic. Runs do not depend on how records were
batched, so a rebuild makes the same rows, unless more than `ROWS` were kept: which
of the oldest were deleted then depends on the order batches took the partitions.

I/O: none (the read-model adapters write what this computes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import NamedTuple

from consumers.readmodel_store import PositionKey, Rejected

ROWS = 1000
"""Rows a generation's `_rejected` keeps (its newest runs). A reason holds at most
2,000 characters (`readmodel_store.storable`), so about 2 MB a generation at worst."""


class Run(NamedTuple):
    """Consecutive rejections of one partition, same claimed position and reason."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    position: int
    reason: str
    records: int
    at: datetime | str | None = None
    """When the first of them was rejected, as the store keeps it (None: now)."""

    def continued_by(self, other: Run) -> bool:
        return (self.position, self.reason) == (other.position, other.reason)


class StoredRun(NamedTuple):
    """A partition's newest `_rejected` row: its id, and the run it holds."""

    id: int
    run: Run


def runs(records: Sequence[Rejected]) -> list[Run]:
    """`records` (in the order they were read) as runs, ordered by their last record."""
    current: dict[PositionKey, tuple[int, Run]] = {}
    ended: list[tuple[int, Run]] = []
    for index, record in enumerate(records):
        topic, partition, offset, position, reason = record.values()
        run = Run(topic, partition, offset, offset, position, reason, 1)
        last = current.get((topic, partition))
        if last is not None and last[1].continued_by(run):
            run = _after(last[1], run)
        elif last is not None:
            ended.append(last)
        current[(topic, partition)] = (index, run)
    return [run for _, run in sorted([*ended, *current.values()], key=itemgetter(0))]


def joined(
    batch: Sequence[Run], newest: Mapping[PositionKey, StoredRun]
) -> tuple[list[Run], list[int]]:
    """The rows to write for a batch's runs, given each partition's `newest` stored row:
    a partition's first run that continues that row takes it in (its first offset, time
    and records), and the row's id is in the ids returned, to delete, as the run is
    written anew (the newest row now). Only the newest `ROWS` runs: the older would be
    deleted at once."""
    rows: list[Run] = []
    taken: list[int] = []
    seen: set[PositionKey] = set()
    for run in batch:
        key = (run.topic, run.partition)
        stored = None if key in seen else newest.get(key)
        seen.add(key)
        if stored is not None and stored.run.continued_by(run):
            taken.append(stored.id)
            rows.append(_after(stored.run, run))
        else:
            rows.append(run)
    return rows[-ROWS:], taken


def _after(earlier: Run, later: Run) -> Run:
    """One run: `later` continuing `earlier`."""
    records = earlier.records + later.records
    return later._replace(first_offset=earlier.first_offset, records=records, at=earlier.at)
