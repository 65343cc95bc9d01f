"""Current state's events and data keys from a local event store (SQLite or memory),
queried on the API's event loop: `StoreEvents`, the `services.event_source.EventSource`
of the embedded API (`services.pg_reads` is PostgreSQL's).

A local query never awaits, so reads ask it at once on the loop; what may wait for a
lock held by another process (a snapshot's write; keys.db, which keeps a rollback
journal) is done on a worker thread, so the loop serves everything else meanwhile.
In: aggregate ids, versions, subjects. Out: stored events, snapshots, data keys.
I/O: the event store's recorders and the key store it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

import anyio
from anyio import to_thread
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteAggregateRecorder

from consumers.key_stores import LOCK_SECONDS, SqliteKeyStore, locked
from consumers.keyring import KeyStore
from services.event_source import log_unstored
from services.sqlite_recorder import HeadReader

T = TypeVar("T")


class StoreEvents:
    """`services.event_source.EventSource` over a local event store (SQLite or memory)
    and key store, queried on the loop.

    Keys (SQLite): keys.db keeps a rollback journal (`consumers.key_stores`), so another
    process writing it (a backup, `sqlite3` in a shell) holds off its readers too. Each
    read of keys and `create_key` is tried on the loop without waiting for a lock
    (`SqliteKeysAtOnce`); refused for one, it is done again on a worker thread through
    the key store, which waits for the lock up to `LOCK_SECONDS` (then 503
    `storage-busy`). One at a time there (the store's connection serves one anyway),
    each waiting its turn at most `LOCK_SECONDS`; the loop serves all else meanwhile.
    (Waiting on the loop, one locked read stopped every request, /healthz too, 5 s.)"""

    def __init__(
        self, recorder: ApplicationRecorder, snapshots: AggregateRecorder, keys: KeyStore
    ) -> None:
        self._recorder = recorder
        self._snapshots = snapshots
        self._keys = keys
        self._keys_at_once = keys.at_once() if isinstance(keys, SqliteKeyStore) else None
        self._keys_turn = anyio.Semaphore(1, fast_acquire=True)
        self._head_reader = HeadReader.of(recorder)  # None in memory (tests)

    async def head(self) -> int:
        if self._head_reader is None:
            return self._recorder.max_notification_id() or 0
        return self._head_reader()

    async def events_after(
        self, aggregate_id: UUID, version: int, limit: int
    ) -> Sequence[StoredEvent]:
        return self._recorder.select_events(aggregate_id, gt=version, limit=limit)

    async def events_after_each(
        self, wanted: Sequence[tuple[UUID, int]], limit: int
    ) -> list[Sequence[StoredEvent]]:
        return [self._recorder.select_events(i, gt=version, limit=limit) for i, version in wanted]

    async def from_snapshot(
        self, aggregate_id: UUID, limit: int
    ) -> tuple[StoredEvent | None, Sequence[StoredEvent]]:
        newest = self._snapshots.select_events(aggregate_id, desc=True, limit=1)
        found = newest[0] if newest else None
        after = 0 if found is None else found.originator_version
        return found, self._recorder.select_events(aggregate_id, gt=after, limit=limit)

    async def put_snapshot(self, snapshot: StoredEvent) -> None:
        """On a worker thread: a write may wait for the writer's lock on the file."""
        await asyncio.to_thread(self._put_snapshot, snapshot)

    def _put_snapshot(self, snapshot: StoredEvent) -> None:
        """Store `snapshot`, then remove the aggregate's older ones from the SQLite file
        (a conversation's state may weigh megabytes; in memory, for tests, all stay). A
        failure (a full disk, say) is logged, not raised."""
        try:
            with contextlib.suppress(IntegrityError):  # another read stored that version
                self._snapshots.insert_events([snapshot])
            if isinstance(self._snapshots, SQLiteAggregateRecorder):
                self._remove_older(self._snapshots, snapshot)
        except PersistenceError as error:
            log_unstored(snapshot, error)

    @staticmethod
    def _remove_older(recorder: SQLiteAggregateRecorder, snapshot: StoredEvent) -> None:
        table = recorder.events_table_name
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE originator_id = ? AND originator_version < ?",
                (UUID(str(snapshot.originator_id)).hex, snapshot.originator_version),
            )

    async def keys(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        if self._keys_at_once is None:  # in memory (tests)
            return self._key_rows(subjects)
        try:
            return self._keys_at_once.rows(subjects)
        except sqlite3.OperationalError as error:
            if not locked(error):
                raise
            refused = error
        return await self._waiting(refused, self._key_rows, subjects)

    async def key_rows(self, subjects: Sequence[UUID]) -> list[tuple[UUID, bytes | None]]:
        return list((await self.keys(subjects)).items())

    async def create_key(self, subject: UUID, key: bytes) -> bytes | None:
        if self._keys_at_once is None:  # in memory (tests)
            return self._keys.create(subject, key)
        try:
            return self._keys_at_once.create(subject, key)
        except sqlite3.OperationalError as error:
            if not locked(error):
                raise
            refused = error
        return await self._waiting(refused, self._keys.create, subject, key)

    def _key_rows(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        found = self._keys.load_many(subjects)
        return {s: k for s, k in found.items() if k is not None or self._keys.destroyed(s)}

    async def _waiting(
        self, refused: sqlite3.OperationalError, call: Callable[..., T], *args: Any
    ) -> T:
        """`call(*args)` on a worker thread, in the keys' turn (see the class), after the
        loop's attempt was `refused` for a lock; `refused` again if the turn did not come."""
        with anyio.move_on_after(LOCK_SECONDS) as waited:
            await self._keys_turn.acquire()
        if waited.cancelled_caught:
            raise refused
        try:
            # not abandoned when the request is cancelled: the connection is in use till then
            return await to_thread.run_sync(call, *args)
        finally:
            self._keys_turn.release()

    def close(self) -> None:
        if self._keys_at_once is not None:
            self._keys_at_once.close()
        if self._head_reader is not None:
            self._head_reader.close()
