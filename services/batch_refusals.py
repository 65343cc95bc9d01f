"""What an event store's insert of a batch refuses, on PostgreSQL and SQLite alike.

Both are decided under the lock every write takes (PostgreSQL's table lock, SQLite's
write transaction), with nothing of the batch stored, and name the aggregates refused,
so that group commit (`services.group_commit`) fails their commands and saves the others:
* `BatchConflictError`: versions it holds are taken (another process saved first);
* `ErasedSubjectError`: events of it are about an erased customer, one whose newest
  stored event (or one earlier in the batch) is its `CustomerErased`.
An event's data subject, the customer whose key seals it, is read from its stored state
(`data_subject`). The stores: `services.pg_batch_recorder`, `services.sqlite_recorder`.
Any other error the server answered while the connection stayed open is a refusal too,
`StoreRefusedError` (a full disk, a lock timeout: the call did not commit). And what an
insert cannot tell: `CommitUnknownError`, a batch sent whose answer was lost.
I/O: none.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)

from domain import codec


def data_subject(stored: StoredEvent) -> UUID:
    """The stored event's data subject (`DomainEvent.data_subject`); for bytes this code
    cannot read as an event (a tool's or a test's raw insert), its aggregate."""
    try:
        return codec.sealed_event(stored).data_subject
    except (ValueError, KeyError):  # an unknown topic, undecodable state, a failed upcast
        return UUID(str(stored.originator_id))


class BatchConflictError(IntegrityError):
    """A batch refused because versions it holds are taken (another process saved those
    aggregates first); nothing of it is stored. `aggregate_ids` names them when the
    locked insert did (empty: unknown, e.g. a batch repeating a version of its own)."""

    def __init__(self, message: str, aggregate_ids: frozenset[UUID] = frozenset()) -> None:
        super().__init__(message)
        self.aggregate_ids = aggregate_ids


class ErasedSubjectError(PersistenceError):
    """A batch refused because events of it are about an erased customer; nothing of it
    is stored, and `aggregate_ids` names those events' aggregates. Not an
    `IntegrityError`: deciding again would be refused again."""

    def __init__(self, message: str, aggregate_ids: frozenset[UUID]) -> None:
        super().__init__(message)
        self.aggregate_ids = aggregate_ids


class StoreRefusedError(PersistenceError):
    """A batch the database refused with an error of its own (`sqlstate`: disk_full,
    lock_not_available, ...), answered on a connection still open, with no earlier
    attempt's answer lost: its transaction did not commit, nothing of it is stored. The
    driver's error is its cause, which the API answers by (`errors.storage_full`, ...)."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class CommitUnknownError(OperationalError):
    """A batch whose insert was sent, whose answer was lost with its connection, and
    whose retries could not reach the database to learn whether it committed: it may be
    stored. Still an `OperationalError` (the database is out of reach)."""
