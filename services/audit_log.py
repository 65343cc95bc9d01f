"""What the audit commands read and write beside the event store: the log as canonical
bytes, its chain links, and the signed checkpoints; and, to check them against the
events, the aggregates' snapshots. One implementation per store.

Tables (created with the event store, see `services.pg_batch_recorder` and
`services.sqlite_recorder`): `<events>_chain (position, previous, chain)` and
`<events>_checkpoints (position, checkpoint JSON, Merkle frontier, published)`.

I/O: the event store's database, through `open_audit_log(app)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain import checkpoint as checkpoints
from domain.chain_walk import Entry, Link
from domain.checkpoint import Checkpoint
from services.event_store import CrmApplication

END = (1 << 63) - 1
"""Past every position."""
PAGE_BYTES = 8 * 1024 * 1024
"""A page's budget of stored states' bytes (`consumers.byte_pages`): a walk holds about
three pages at once (the one walked, the one read ahead, their canonical copies), so a
log of ~350 kB events is walked in ~25 events a page instead of 5,000 (1.7 GB)."""


class Malformed(bytes):
    """The canonical bytes of a stored row that is not in its one canonical stored form
    (an aggregate id spelled otherwise than the store writes it, a cell of another
    storage type): the application reads such a row as another event or not at all,
    so it is an edit, whatever its bytes would hash to. Its bytes are the row's fields
    as far as they can be read, with one byte more: they never give the row's link.
    `reason` says what is wrong, for the report."""

    reason: str

    def __new__(cls, canonical: bytes, reason: str) -> Malformed:
        made = super().__new__(cls, canonical + b"\x00")
        made.reason = reason
        return made


class Stray(NamedTuple):
    """An event stored at a position no walk reads (below 1): the application reads it
    all the same (it loads by aggregate id and version), so it is an insertion."""

    position: int | None
    aggregate_id: str
    version: int
    topic: str

    def __str__(self) -> str:  # as `CanonicalEvent` names an event
        return f"{self.topic.partition('@')[0]} of {self.aggregate_id} version {self.version}"


SnapshotKey = tuple[UUID | None, int, str]
"""A stored snapshot's aggregate id, version and tag (`domain.snapshot.TAGS`)."""


class AuditLog(Protocol):
    def entries(
        self, after: int, upto: int, limit: int, max_bytes: int | None = None
    ) -> list[Entry]:
        """Events with `after < position <= upto`, oldest first, at most `limit`, and
        (given `max_bytes`) ending at the event whose state brings the page to that
        many bytes (`consumers.byte_pages`: one event at least). A row not in its
        canonical stored form comes as `Malformed` bytes."""
        ...

    def links(self, after: int, upto: int) -> list[Link]:
        """Chain links with `after < position <= upto`, oldest first."""
        ...

    def last_position(self) -> int:
        """The highest position of an event or a link, read in one snapshot: every
        event and link at or below it is committed (positions follow commit order)."""
        ...

    def link_before(self, position: int) -> tuple[int, bytes] | None:
        """The last link before `position`: (its position, chain value)."""
        ...

    def position_of(self, aggregate_id: UUID, version: int) -> int | None: ...

    def snapshot_keys(self) -> list[SnapshotKey]:
        """Every stored snapshot's aggregate (None: an id the store never spells so, which
        the application never reads), version and tag."""
        ...

    def snapshot_state(self, aggregate_id: UUID, version: int) -> bytes | None:
        """The state of the aggregate's snapshot at `version` (None: there is none)."""
        ...

    def aggregate_events(
        self, aggregate_id: UUID, after: int, upto: int, limit: int
    ) -> list[StoredEvent]:
        """The aggregate's events with `after < version <= upto`, oldest first, at most
        `limit`: what the application reads of it, whatever their positions."""
        ...

    def first_stray(self) -> Stray | None:
        """The first event at a position below 1 (or none at all), which no walk of
        positions reads: there are none unless written behind the application's back."""
        ...

    def count_between(self, after: int, upto: int) -> int:
        """How many events have `after < position <= upto`."""
        ...

    def checkpoints(self, after: int = 0, limit: int = 1 << 31) -> list[Checkpoint]: ...

    def latest_checkpoint(self) -> tuple[Checkpoint, bytes] | None:
        """The newest checkpoint with the Merkle frontier saved beside it."""
        ...

    def add_checkpoint(self, checkpoint: Checkpoint, frontier: bytes) -> bool:
        """Store a checkpoint; False if one already ends at its position."""
        ...

    def unpublished(self) -> list[Checkpoint]: ...

    def mark_published(self, positions: Sequence[int]) -> None: ...

    def relay_position(self) -> int | None:
        """How far the relay has published (None: no relay keeps a position here)."""
        ...

    def exclusive(self) -> AbstractContextManager[AuditLog]:
        """This log within one transaction that holds the store's write lock."""
        ...

    def unchained(self) -> int:
        """How many events have no chain link."""
        ...

    def drop_links(self) -> None:
        """Delete every link (inside `exclusive()` only)."""
        ...

    def append_links(self, links: Iterable[Link]) -> None:
        """Store links (inside `exclusive()` only)."""
        ...

    def close(self) -> None: ...


class StatementLog:
    """What both stores do alike: named statements (`_SQL` of each backend, with the
    store's table names) run by the backend's `_rows`."""

    def _rows(self, name: str, params: Sequence[Any] = (), *, bulk: bool = False) -> list[Any]:
        raise NotImplementedError("each store runs its statements its own way")

    def links(self, after: int, upto: int) -> list[Link]:
        return self._rows("links", (after, upto), bulk=True)

    def last_position(self) -> int:
        return int(self._rows("last_position")[0][0])

    def link_before(self, position: int) -> tuple[int, bytes] | None:
        rows = self._rows("link_before", (position,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def count_between(self, after: int, upto: int) -> int:
        return int(self._rows("count_between", (after, upto))[0][0])

    def checkpoints(self, after: int = 0, limit: int = 1 << 31) -> list[Checkpoint]:
        return [checkpoints.decode(row[0]) for row in self._rows("checkpoints", (after, limit))]

    def latest_checkpoint(self) -> tuple[Checkpoint, bytes] | None:
        rows = self._rows("latest_checkpoint")
        return (checkpoints.decode(rows[0][0]), bytes(rows[0][1])) if rows else None

    def add_checkpoint(self, checkpoint: Checkpoint, frontier: bytes) -> bool:
        document = checkpoints.encode(checkpoint)
        return bool(self._rows("add_checkpoint", (checkpoint.position, document, frontier)))

    def unpublished(self) -> list[Checkpoint]:
        return [checkpoints.decode(row[0]) for row in self._rows("unpublished")]

    def mark_published(self, positions: Sequence[int]) -> None:
        for position in positions:
            self._rows("mark_published", (position,))

    def unchained(self) -> int:
        return int(self._rows("unchained")[0][0])

    def _stored_id(self, aggregate_id: UUID) -> Any:
        """An aggregate id as the store's queries take it."""
        raise NotImplementedError("each store spells ids its own way")

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        rows = self._rows("position_of", (self._stored_id(aggregate_id), version))
        return int(rows[0][0]) if rows else None

    def snapshot_state(self, aggregate_id: UUID, version: int) -> bytes | None:
        rows = self._rows("snapshot_state", (self._stored_id(aggregate_id), version))
        if not rows:
            return None
        state = rows[0][0]  # a row written behind the store's back may hold anything
        return bytes(state) if isinstance(state, bytes | bytearray | memoryview) else b""

    def aggregate_events(
        self, aggregate_id: UUID, after: int, upto: int, limit: int
    ) -> list[StoredEvent]:
        params = (self._stored_id(aggregate_id), after, upto, limit)
        return [
            StoredEvent(aggregate_id, version, topic, bytes(state))
            for version, topic, state in self._rows("aggregate_events", params, bulk=True)
        ]

    def first_stray(self) -> Stray | None:
        rows = self._rows("first_stray")
        if not rows:
            return None
        position, aggregate, version, topic = rows[0]
        return Stray(position, _spelled(aggregate), version, str(topic))

    def drop_links(self) -> None:
        self._rows("drop_links")


def _spelled(aggregate: object) -> str:
    """An aggregate id as a report spells it (SQLite stores it as `UUID.hex`)."""
    try:
        return str(aggregate if isinstance(aggregate, UUID) else UUID(str(aggregate)))
    except ValueError:  # no id at all: as stored
        return repr(aggregate)


def open_audit_log(app: CrmApplication) -> AuditLog:
    """The audit log of `app`'s store (PostgreSQL or SQLite; the in-memory store has none)."""
    from eventsourcing.postgres import PostgresAggregateRecorder
    from eventsourcing.sqlite import SQLiteAggregateRecorder

    from services.audit_log_pg import PostgresAuditLog
    from services.audit_log_sqlite import SqliteAuditLog
    from services.pg_batch_recorder import BatchInsertRecorder
    from services.sqlite_recorder import ChainedSQLiteRecorder

    recorder = app.recorder
    snapshots = app.snapshot_recorder
    if isinstance(recorder, BatchInsertRecorder):
        assert isinstance(snapshots, PostgresAggregateRecorder)
        return PostgresAuditLog(recorder, snapshots=snapshots.events_table_name)
    if isinstance(recorder, ChainedSQLiteRecorder):
        assert isinstance(snapshots, SQLiteAggregateRecorder)
        return SqliteAuditLog(recorder, snapshots=snapshots.events_table_name)
    raise NotImplementedError(f"no hash chain on {type(recorder).__name__} (in-memory store)")


def chain_at(log: AuditLog, position: int) -> bytes | None:
    """The stored chain value at `position`; None if no link is stored there."""
    stored = log.link_before(position + 1)
    return stored[1] if stored is not None and stored[0] == position else None


def pages(
    log: AuditLog,
    after: int = 0,
    upto: int = END,
    size: int = 5000,
    max_bytes: int = PAGE_BYTES,
) -> Iterator[tuple[list[Entry], list[Link]]]:
    """The log and its links, page by page over the same position ranges: a page ends
    at its last event (at most `size` events, cut at `max_bytes` of states); the last
    page takes every link left up to `upto`. The next page is read on a thread while
    the caller works on this one (the database's time then overlaps Python's: a
    verify's walk is as long as its reading)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-read") as reader:
        pending = reader.submit(_page, log, after, upto, size, max_bytes)
        while True:
            entries, links, high, full = pending.result()
            if full:
                pending = reader.submit(_page, log, high, upto, size, max_bytes)
            if entries or links:
                yield entries, links
            del entries, links  # not held while the next page is read
            if not full:
                return


def _page(
    log: AuditLog, after: int, upto: int, size: int, max_bytes: int
) -> tuple[list[Entry], list[Link], int, bool]:
    """One page, its links, where it ends, and whether the log may go on after it (a
    page cut by bytes holds at least `max_bytes` of canonical bytes: a page that only
    reaches that much at the log's end costs one more, empty, read)."""
    entries = log.entries(after, upto, size, max_bytes)
    full = len(entries) >= size or sum(len(canonical) for _, canonical in entries) >= max_bytes
    high = entries[-1][0] if full else upto
    return entries, log.links(after, high), high, full
