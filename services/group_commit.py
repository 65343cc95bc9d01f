"""Group commit: concurrent commands share one event-store transaction.

Every insert into the event store takes a table lock (that keeps notification ids in
commit order), so one transaction per command caps throughput at a few thousand per
second; saving many aggregates per transaction does not. Callers (threads) hand in
their decided aggregate and block until it is durable.

One writer thread per committer saves what has queued up (up to `max_batch`) with ONE
`app.record(...)`, then releases each caller through its own pre-acquired lock (the
cheapest wake-up Python has). Callers wrap each whole command in `command()`, so the
writer knows how many are still loading and deciding: it flushes as soon as every one
of them has queued its save (or given up), and waits at most `window_ms` for them.
A lone command is therefore written at once, and under load a batch holds every
concurrent caller instead of whoever happened to be first (a transaction costs about
as much for 1 event as for 16, so fragments cost throughput).

A conflict (IntegrityError) in a batch must not fail the others: the batch is then
saved again one aggregate at a time, and each caller gets its own answer or error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError

from domain.base import Aggregate, DomainEvent
from services.event_store import CrmApplication, versions_by_id

Saved = tuple[int, int]
"""(new version, global position of its last event)."""


class _Request:
    """An aggregate's decided events (kept so a failed batch can be saved again: the
    event store pops pending events off an aggregate even when the save fails), and
    the lock its caller blocks on until the writer has an answer."""

    def __init__(self, aggregate: Aggregate) -> None:
        self.id = aggregate.id
        self.events: list[DomainEvent] = aggregate.collect_events()
        self.done = threading.Lock()
        self.done.acquire()
        self.result: Saved | None = None
        self.error: BaseException | None = None

    def collect_events(self) -> list[DomainEvent]:
        return list(self.events)

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def succeed(self, result: Saved) -> None:
        self.result = result
        self.done.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.release()

    def outcome(self) -> Saved:
        self.done.acquire()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class StoreFailedError(PersistenceError):
    """The batch this command was in failed for a reason other than a conflict."""


class DirectCommitter:
    """One transaction per command: the baseline that group commit is measured against."""

    def __init__(self, app: CrmApplication) -> None:
        self._app = app

    @contextmanager
    def command(self) -> Iterator[None]:
        yield

    def save(self, aggregate: Aggregate) -> Saved:
        return versions_by_id(self._app.record(aggregate))[aggregate.id]


class GroupCommitter:
    def __init__(
        self,
        app: CrmApplication,
        *,
        window_ms: float,
        max_batch: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._app = app
        self._window = window_ms / 1000
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._changed = threading.Condition()
        self._queue: list[_Request] = []
        self._deciding = 0
        self._closing = False
        self._writer = threading.Thread(target=self._write, name="group-commit", daemon=True)
        self._writer.start()

    @contextmanager
    def command(self) -> Iterator[None]:
        """Wrap a whole command (load, decide, save): while callers are deciding, the
        writer holds the batch for them (at most `window_ms`)."""
        with self._changed:
            self._deciding += 1
        try:
            yield
        finally:
            with self._changed:
                self._deciding -= 1
                if self._queue and self._full():  # it was waiting for this caller
                    self._changed.notify()

    def save(self, aggregate: Aggregate) -> Saved:
        """Make the aggregate's pending events durable; block until they are."""
        request = _Request(aggregate)
        with self._changed:
            if self._closing:
                raise StoreFailedError("the group committer is closed")
            self._queue.append(request)
            if len(self._queue) == 1 or self._full():
                self._changed.notify()
        return request.outcome()

    def close(self) -> None:
        """Stop the writer once the commands queued so far are saved."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._writer.join()

    def _full(self) -> bool:
        """Every caller in a command has queued its save (or the batch is full)."""
        return len(self._queue) >= min(self._deciding, self._max_batch)

    def _write(self) -> None:
        while batch := self._gather():
            self._flush(batch)

    def _gather(self) -> list[_Request]:
        """The next batch: once something is queued, wait up to `window_ms` for the
        callers still deciding. Empty when closed and drained."""
        with self._changed:
            while not self._queue and not self._closing:
                self._changed.wait()
            deadline = time.monotonic() + self._window
            while not self._closing and not self._full():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            return batch

    def _flush(self, batch: list[_Request]) -> None:
        started = time.perf_counter()
        failure = StoreFailedError("the batch holding this command failed")
        try:
            self._save_together(batch)
        except Exception as error:  # the writer thread must outlive a bad batch
            failure.__cause__ = error  # each caller of the batch sees why
        finally:
            for request in batch:
                if not request.finished:
                    request.fail(failure)
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - started)

    def _save_together(self, batch: list[_Request]) -> None:
        try:
            recordings = self._app.record(*[cast(Aggregate, request) for request in batch])
        except IntegrityError as conflict:
            if len(batch) == 1:
                batch[0].fail(conflict)
                return
            for request in batch:
                self._save_together([request])
            return
        except PersistenceError as error:
            for request in batch:
                request.fail(error)
            return
        saved: dict[UUID, Saved] = versions_by_id(recordings)
        for request in batch:
            request.succeed(saved[request.id])
