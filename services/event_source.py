"""What current state reads from: the `EventSource` protocol, one implementation per store.

`services.current_state.CurrentState` asks its source for an aggregate's events newer than
the version it holds, a page at a time, for the newest snapshot with the page after it, for
the store's head and for customers' data keys; `services.pg_reads` answers with awaited
queries on PostgreSQL, `services.api.local_events` with local ones (SQLite, memory). A
snapshot a source cannot store is logged (`log_unstored`), never raised: a snapshot is a
cache. In: aggregate ids, versions, page sizes, subjects. Out: `StoredEvent`s (events and
snapshots), positions, data keys. I/O: whatever the implementation does; here, a log line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

import structlog
from eventsourcing.persistence import StoredEvent

After = tuple[UUID, int]  # an aggregate, and the version its events are wanted after
log = structlog.get_logger("crm.current_state")


class EventSource(Protocol):
    async def head(self) -> int:
        """The newest committed global position (0 when empty)."""
        ...

    async def events_after(
        self, aggregate_id: UUID, version: int, limit: int
    ) -> Sequence[StoredEvent]:
        """The aggregate's stored events with a version above `version`, oldest first, at
        most `limit` of them."""
        ...

    async def events_after_each(
        self, wanted: Sequence[After], limit: int
    ) -> Sequence[Sequence[StoredEvent]]:
        """`events_after` of each of `wanted`, in their order, asked all at once."""
        ...

    async def from_snapshot(
        self, aggregate_id: UUID, limit: int
    ) -> tuple[StoredEvent | None, Sequence[StoredEvent]]:
        """A read from nothing, asked at once: the aggregate's newest snapshot stored
        (its version, tag as the topic, and state: `domain.snapshot`; None if it has
        none), and `events_after` its version (0 without one)."""
        ...

    async def put_snapshot(self, snapshot: StoredEvent) -> None:
        """Store a snapshot, unless one of its version is stored already, and remove
        (from a database) the aggregate's older ones. A failure is logged
        (`log_unstored`), not raised: the read that took it must not fail for a cache."""
        ...

    async def keys(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        """Data keys of those subjects that have a row: the key, or None once destroyed."""
        ...

    async def key_rows(self, subjects: Sequence[UUID]) -> Sequence[tuple[UUID, bytes | None]]:
        """`keys` as (subject, key) pairs: no `UUID` hashed (a Python method)."""
        ...

    async def create_key(self, subject: UUID, key: bytes) -> bytes | None:
        """Store `key` unless the subject has a key or was erased: the key in force, or
        None once destroyed (`KeyStore.create`)."""
        ...


def log_unstored(snapshot: StoredEvent, error: Exception) -> None:
    """Logs a snapshot an `EventSource` could not store: the read that took it goes on
    (a snapshot is a cache; a later read takes another)."""
    aggregate, version = str(snapshot.originator_id), snapshot.originator_version
    log.warning("snapshot not stored", aggregate=aggregate, version=version, error=str(error))
