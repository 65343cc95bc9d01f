"""The read-model store interface, and the logic both adapters share.

A projection's tables live in a *generation* (PostgreSQL schema `sales_v3`; SQLite
tables `sales_v3__customers`). Readers use the stable names (schema `sales` of
views; SQLite views `sales__customers`) which point at the live generation. A
rebuild fills a new generation beside the live one and `switch` repoints the views
in one transaction, then drops the old generation: readers never see a half-built
model. Tables whose name starts with `_` are working state and get no view.

Per generation the store also keeps its bookkeeping, written in the same
transaction as the rows: `_positions` (next Kafka offset per topic/partition, or
the event-store position under topic `STORE_TOPIC`), `_applied` (last applied
version per aggregate, for deduplication and order), `_dead_letters` (events the read
model lacks), `_rejected` (records it must never apply: `consumers.projecting`) and
`_status`.

I/O contract: adapters do all SQL; this module only shapes data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from projections.base import (
    ColumnType,
    KeyValues,
    Projection,
    Row,
    Segment,
    SetOperation,
    Table,
)

STORE_TOPIC = "__event_store__"
"""Pseudo-topic under which the embedded follower stores its event-store position."""

PositionKey = tuple[str, int]


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    topic: str
    partition: int
    offset: int
    position: int
    aggregate_id: UUID | None
    aggregate_version: int | None
    event_type: str
    error: str
    payload: bytes

    def values(self) -> tuple[Any, ...]:
        """The columns of a `_dead_letters` row, in the order of the fields above."""
        row = tuple(getattr(self, f.name) for f in fields(self))
        return (*row[:8], storable(self.error), self.payload)


@dataclass(frozen=True)
class Rejected:
    """A record a consumer refused (`consumers.projecting`): where it came from, its
    event's position (0 for a record the event store does not hold: the reason says
    what it claimed), and why. Not its bytes: whoever produced it chose them, and the
    record stays on its topic for anyone who must look."""

    topic: str
    partition: int
    offset: int
    position: int
    reason: str

    def values(self) -> tuple[Any, ...]:
        """The columns of a `_rejected` row, in the order of the fields above."""
        return (self.topic, self.partition, self.offset, self.position, storable(self.reason))


def storable(text: str) -> str:
    """`text` as a text column holds it, at most 2,000 characters: an error or a reason
    may quote what a record claims (its `type`), and a NUL or a lone surrogate there,
    which PostgreSQL cannot store, must not stop a consumer."""
    text = text[:2000]
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


RecordKey = tuple[str, int, int]
"""(topic, partition, offset) of a record: a Kafka record, or the event store's
`STORE_TOPIC`, partition 0 and the notification id."""


class StoredLetter(NamedTuple):
    """What retrying a dead letter needs: where its record came from, and its bytes."""

    topic: str
    partition: int
    offset: int
    position: int
    payload: bytes


@dataclass(frozen=True)
class Status:
    name: str
    generation: int | None
    events: int
    last_event_at: datetime | None
    last_position: int
    dead_letters: int
    positions: dict[PositionKey, int]
    lag: int | None = None
    rejected: int = 0
    """Records refused as not the event store's, or out of their aggregate's order."""


class ReadModelNotBuilt(Exception):  # noqa: N818 - a state, like the HTTP status it maps to
    """A query named a read model whose projection has never run, so its views do not
    exist yet: an operator's step is missing (`crm consume NAME`), not a bug."""

    def __init__(self, tables: Mapping[str, str]) -> None:
        names = ", ".join(sorted({name.split(".")[0] for name in tables.values()}))
        super().__init__(
            f"not every read model of this query ({names}) is built yet: a projection"
            " has never run (/readyz names it)"
        )


class LocksHeld(RuntimeError):  # noqa: N818 - a state, like ReadModelNotBuilt
    """A schema change (a rebuild's switch) gave up waiting for locks other sessions held
    on a projection's read model: it was rolled back whole, the live generation is as it
    was (`consumers.pg_lock_wait`)."""

    def __init__(self, projection: str, waited_s: float, holders: list[str]) -> None:
        self.projection, self.holders = projection, holders
        held = "; ".join(holders) or "sessions that let go before they could be named"
        super().__init__(
            f"{projection}: gave up after {waited_s:.0f} s waiting for locks on its read"
            f" model, held by {held}. Nothing was switched. End those sessions"
            " (SELECT pg_terminate_backend(pid)) or wait for them, then run it again."
        )


class TableWrites(NamedTuple):
    """What one segment does to one table: upsert rows, delete keys, add to counters."""

    table: Table
    upserts: list[Row]
    deletes: list[KeyValues]
    increments: list[Row]


class Session(Protocol):
    """One read-model transaction of one projection generation."""

    def lock_positions(self, keys: Sequence[PositionKey]) -> dict[PositionKey, int]: ...

    def positions(self) -> dict[PositionKey, int]: ...

    def load_rows(self, table: Table, keys: Sequence[KeyValues]) -> list[Row]: ...

    def load_applied(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]: ...

    def write(self, writes: Sequence[TableWrites], closing: Sequence[SetOperation]) -> None: ...

    def save_applied(self, versions: dict[UUID, int]) -> None: ...

    def save_positions(self, positions: dict[PositionKey, int]) -> None: ...

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...

    def add_rejected(self, records: Sequence[Rejected]) -> None: ...

    def record_progress(
        self, events: int, last_event_at: datetime | None, position: int, lag: int | None
    ) -> None: ...

    def dead_letters(self) -> list[StoredLetter]:
        """Every dead letter, oldest first."""
        ...

    def drop_dead_letters(self, records: Sequence[RecordKey]) -> None:
        """Delete the dead letters of these records (they are being retried)."""
        ...


class ReadModelStore(Protocol):
    """A database holding read models; one adapter per database (PostgreSQL, SQLite)."""

    dialect: str
    transient_errors: tuple[type[Exception], ...]
    """Database errors after which a batch is rolled back and retried (never dead letters)."""
    value_errors: tuple[type[Exception], ...]
    """Those of `transient_errors` that are an event's fault all the same (a value beyond
    one of the database's limits): retried, they would fail for good, so the event that
    raises them is dead-lettered like any other whose rows cannot be written."""

    def opener(self) -> Callable[[], ReadModelStore]:
        """Opens this same store again; picklable, for a projection writer process."""
        ...

    def live_generation(self, name: str) -> int | None: ...

    def install(self, projection: Projection) -> int: ...

    def create_generation(self, projection: Projection) -> int: ...

    def switch(self, projection: Projection, generation: int) -> None: ...

    def drop_generation(self, name: str, generation: int) -> None: ...

    def session(
        self, projection: Projection, generation: int
    ) -> AbstractContextManager[Session]: ...

    def status(self, name: str, generation: int | None = None) -> Status: ...

    def fetch(
        self,
        query: str,
        tables: dict[str, str],
        params: dict[str, Any],
        types: Mapping[str, ColumnType] | None = None,
    ) -> list[Row]:
        """Rows of `query`; a column named in `types` comes back as that type's Python
        value (UUID, bool, aware datetime, Decimal), on SQLite as psycopg gives it.
        `ReadModelNotBuilt` when a read model it names has no views yet."""
        ...

    def dump(self, name: str, generation: int, table: Table) -> list[Row]: ...

    def after_erasure(self) -> None:
        """Make what an erasure overwrote leave the store's files, where the store can."""
        ...

    def close(self) -> None: ...


def table_writes(tables: dict[str, Table], segment: Segment) -> Iterator[TableWrites]:
    """Group a segment's net changes by table, counters filled with 0 where absent."""
    by_table: dict[str, TableWrites] = {}

    def writes_of(name: str) -> TableWrites:
        if (writes := by_table.get(name)) is None:
            writes = by_table[name] = TableWrites(tables[name], [], [], [])
        return writes

    for (name, key), row in segment.rows.items():
        if row is None:
            writes_of(name).deletes.append(key)
        else:
            writes_of(name).upserts.append(row)
    for (name, _), (key_row, deltas) in segment.counters.items():
        writes = writes_of(name)
        counters = {c: deltas.get(c, 0) for c in writes.table.value_columns}
        writes.increments.append({**key_row, **counters})
    return iter(by_table.values())


def public_tables(projection: Projection) -> list[Table]:
    """The tables readers see through the stable views (not `_private` working state)."""
    return [t for t in projection.tables if not t.name.startswith("_")]


def analyst_views(projection: Projection) -> list[str]:
    """The stable views the analysts' SQL role may read (not the search index)."""
    return [t.name for t in public_tables(projection) if t.analysts]


def switch_or_drop(store: ReadModelStore, projection: Projection, generation: int) -> None:
    """Switch to the rebuilt `generation`; if the switch gives up waiting for locks others
    hold (`LocksHeld`: rolled back, the live generation unchanged), drop it, as a rebuild
    that fails leaves nothing behind, and say so."""
    try:
        store.switch(projection, generation)
    except LocksHeld as error:
        store.drop_generation(projection.name, generation)
        error.add_note(f"The rebuilt version {generation} was dropped.")
        raise
