"""The embedded event store's recorder: eventsourcing's SQLite recorder plus the hash chain.

Each insert extends the chain (`domain.hashchain`) in the same transaction: the events
are inserted first, which takes SQLite's write lock (the counterpart of PostgreSQL's
table lock: one writer at a time, so positions are in commit order), then the chain's
head is read and one `executemany` appends the batch's links to `<events table>_chain`.
The table of signed checkpoints is created beside them. In the same transaction, once
the inserts hold the write lock, a batch's events about an erased customer are refused
as on PostgreSQL (`services.pg_batch_recorder`, `ErasedSubjectError`): an event whose
data subject's newest event stored before it is that customer's `CustomerErased`. The
API's own check trusts the keyring, which learns of an erasure only once its key is
destroyed, after its event is stored: commands racing an erasure were stored after it.
`select_notifications_within` is the embedded follower's page read, bounded in bytes
(`consumers.byte_pages`). Selected by `APPLICATION_RECORDER_TOPIC` (see
`services.event_store.store_env`).

I/O: SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification, StoredEvent
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteCursor,
    SQLiteDatastore,
)

from consumers.byte_pages import notifications_within, within_params
from domain.customer import CustomerErased
from domain.hashchain import GENESIS, canonical_event, chain_rows
from services.batch_refusals import ErasedSubjectError, data_subject


class ChainedSQLiteRecorder(SQLiteApplicationRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        self.chain_table = f"{events_table_name}_chain"
        self.checkpoints_table = f"{events_table_name}_checkpoints"
        super().__init__(datastore, events_table_name)
        self._select_head = (
            f"SELECT position, chain FROM {self.chain_table} ORDER BY position DESC LIMIT 1"
        )
        self._insert_links = f"INSERT INTO {self.chain_table} VALUES (?, ?, ?)"
        self._select_within = notifications_within("sqlite", events_table_name, "rowid", "?")
        self._select_newest_before = (
            f"SELECT topic FROM {events_table_name} WHERE originator_id = ? AND rowid < ?"
            " ORDER BY originator_version DESC LIMIT 1"
        )
        self._erased_topic = f"{CustomerErased.wire_name()}@"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {self.chain_table} ("
            "position INTEGER PRIMARY KEY, previous INTEGER NOT NULL, chain BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.checkpoints_table} ("
            "position INTEGER PRIMARY KEY, checkpoint BLOB NOT NULL, frontier BLOB NOT NULL,"
            " published INTEGER NOT NULL DEFAULT 0)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions: Sequence[int] | None = super()._insert_events(c, stored_events, **kwargs)
        assert positions is not None  # the application recorder returns the rowids
        self._refuse_erased_subjects(c, stored_events, positions)
        c.execute(self._select_head)
        head = c.fetchone()
        head_position, head_chain = (head[0], head[1]) if head else (0, GENESIS)
        canonicals = [
            canonical_event(position, _uuid(event.originator_id), event.originator_version,
                            event.topic, event.state)
            for position, event in zip(positions, stored_events, strict=True)
        ]  # fmt: skip
        c.executemany(
            self._insert_links, chain_rows(head_position, head_chain, positions, canonicals)
        )
        return positions

    def _refuse_erased_subjects(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], positions: Sequence[int]
    ) -> None:
        """`ErasedSubjectError` (the transaction rolled back) naming the aggregates of the
        events whose data subject was erased before them: one indexed look-up each."""
        refused = set()
        for event, position in zip(stored_events, positions, strict=True):
            c.execute(self._select_newest_before, (data_subject(event).hex, position))
            newest = c.fetchone()
            if newest is not None and newest[0].startswith(self._erased_topic):
                refused.add(_uuid(event.originator_id))
        if refused:
            raise ErasedSubjectError(
                "an event of this batch is about an erased customer", frozenset(refused)
            )

    def select_notifications_within(
        self, start: int, limit: int, max_bytes: int
    ) -> Sequence[Notification]:
        """`select_notifications(start, limit)` cut by bytes in the database: it stops at
        the notification whose state brings the page to `max_bytes` (`consumers.byte_pages`)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_within, within_params(start, limit, max_bytes))
            return [
                Notification(
                    id=id_,
                    originator_id=self.convert_originator_id(originator_id),
                    originator_version=version,
                    topic=topic,
                    state=state,
                )
                for id_, originator_id, version, topic, state in c.fetchall()
            ]


class HeadReader:
    """The store's head (`max_notification_id`) read on a connection of its own, for one
    thread (the API's event loop, which reads it once a read of current state): through
    eventsourcing's pool, a connection taken and given back under its locks, a `BEGIN`
    and a rollback, a read cost ~27 us of CPU; one statement on this connection ~3 us.
    In WAL mode (the pool sets it on the file) a lone statement is a read transaction of
    its own that sees every commit before it and never waits for a writer; it waits for
    a lock only as the pool's connections do (`lock_timeout`). Read only."""

    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        pool = recorder.datastore.pool
        self._conn = sqlite3.connect(
            pool.db_name,
            uri=True,
            check_same_thread=False,  # made on the main thread, used by the loop's
            isolation_level=None,
            timeout=pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
        )
        self._conn.execute("PRAGMA query_only = ON")
        self._statement = recorder.select_max_notification_id_statement

    @classmethod
    def of(cls, recorder: ApplicationRecorder) -> HeadReader | None:
        """A reader of `recorder`'s file; None for any other store, and for an SQLite
        database in memory, which another connection would not share."""
        if not isinstance(recorder, SQLiteApplicationRecorder):
            return None
        return None if recorder.datastore.pool.is_sqlite_memory_mode else cls(recorder)

    def __call__(self) -> int:
        """The head now, read to the statement's end: no read transaction outlives the
        call (one left open would hide later commits and pin the WAL)."""
        ((found,),) = self._conn.execute(self._statement).fetchall()
        return int(found or 0)

    def close(self) -> None:
        self._conn.close()


def _uuid(originator_id: UUID | str) -> UUID:
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
