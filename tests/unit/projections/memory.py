"""An in-memory read-model session (a hand-written fake of `Session`) for unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from consumers.projecting import Item, project
from consumers.readmodel_store import (
    DeadLetter,
    PositionKey,
    RecordKey,
    Rejected,
    StoredLetter,
    TableWrites,
)
from domain.base import DomainEvent
from projections.base import KeyValues, Projection, Row, Scrub, SetOperation, Table, scrubbed


class MemorySession:
    def __init__(self, projection: Projection) -> None:
        self.specs = {t.name: t for t in projection.tables}
        self.tables: dict[str, dict[KeyValues, Row]] = {t.name: {} for t in projection.tables}
        self.offsets: dict[PositionKey, int] = {}
        self.applied: dict[UUID, int] = {}
        self.dead: list[DeadLetter] = []
        self.rejected: list[Rejected] = []

    def lock_positions(self, keys: Sequence[PositionKey]) -> dict[PositionKey, int]:
        return {k: self.offsets[k] for k in keys if k in self.offsets}

    def positions(self) -> dict[PositionKey, int]:
        return dict(self.offsets)

    def load_rows(self, table: Table, keys: Sequence[KeyValues]) -> list[Row]:
        rows = self.tables[table.name]
        return [dict(rows[k]) for k in keys if k in rows]

    def load_applied(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        return {a: self.applied[a] for a in aggregate_ids if a in self.applied}

    def write(self, writes: Sequence[TableWrites], closing: Sequence[SetOperation]) -> None:
        for w in writes:
            rows = self.tables[w.table.name]
            for key in w.deletes:
                rows.pop(key, None)
            for row in w.upserts:
                rows[w.table.key_of(row)] = dict(row)
            for row in w.increments:
                old = rows.get(w.table.key_of(row))
                rows[w.table.key_of(row)] = (
                    dict(row)
                    if old is None
                    else {k: (v if k in w.table.key else old[k] + v) for k, v in row.items()}
                )
        for op in closing:
            self._set_operation(op)

    def _set_operation(self, op: SetOperation) -> None:
        spec, rows = self.specs[op.table], self.tables[op.table]
        for key, row in list(rows.items()):
            if isinstance(op, Scrub) and row.get(spec.subject or "") == op.subject:
                rows[key] = scrubbed(spec, row)
            elif not isinstance(op, Scrub) and row.get(op.column) == op.value:
                del rows[key]

    def save_applied(self, versions: dict[UUID, int]) -> None:
        for aggregate, version in versions.items():  # as the stores: the greater one
            self.applied[aggregate] = max(version, self.applied.get(aggregate, 0))

    def save_positions(self, positions: dict[PositionKey, int]) -> None:
        self.offsets.update(positions)

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.dead.extend(letters)

    def add_rejected(self, records: Sequence[Rejected]) -> None:
        self.rejected.extend(records)

    def record_progress(
        self, events: int, last_event_at: datetime | None, position: int, lag: int | None
    ) -> None:
        return None

    def dead_letters(self) -> list[StoredLetter]:
        return [
            StoredLetter(d.topic, d.partition, d.offset, d.position, d.payload) for d in self.dead
        ]

    def drop_dead_letters(self, records: Sequence[RecordKey]) -> None:
        self.dead = [d for d in self.dead if (d.topic, d.partition, d.offset) not in records]

    def sorted_rows(self, table: str) -> list[Row]:
        return [self.tables[table][k] for k in sorted(self.tables[table], key=repr)]


def replay(
    projection: Projection, events: Sequence[DomainEvent], batch_size: int = 1000
) -> MemorySession:
    """Apply `events` through the real batch logic, `batch_size` at a time. They may be
    some of each aggregate's events (a test of surveys starts at a conversation's fifth
    version): versions are not asked to follow one another (`project`'s `in_order`)."""
    session = MemorySession(projection)
    items = [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(events)]
    for start in range(0, len(items), batch_size):
        project(session, projection, items[start : start + batch_size], in_order=False)
    return session
