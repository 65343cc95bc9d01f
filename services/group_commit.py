"""Group commit: concurrent commands share one event-store transaction.

Every insert into the event store takes a table lock (that keeps notification ids in
commit order), so one transaction per command caps throughput at a few thousand per
second; saving many aggregates per transaction does not. Callers (threads) hand in
their decided aggregate and block until it is durable.

Leader/follower: the first caller to find no flush in progress becomes the leader and
flushes at once, so a lone command under light traffic is not delayed. Callers that
arrive meanwhile queue up; when the flush ends, the first of them leads the next one,
saving the whole queue (up to `max_batch`) with ONE `app.record(...)`. When batches are
busy, the leader waits up to `window_ms` for about as many callers as last time.

A conflict (IntegrityError) in a batch must not fail the others: the batch is then
saved again one aggregate at a time, and each caller gets its own answer or error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError

from domain.base import Aggregate, DomainEvent
from services.event_store import CrmApplication, versions_by_id

Saved = tuple[int, int]
"""(new version, global position of its last event)."""


class _Pending:
    """An aggregate's decided events, kept so a failed batch can be saved again
    (the event store pops pending events off an aggregate even when the save fails)."""

    def __init__(self, aggregate: Aggregate) -> None:
        self.id = aggregate.id
        self.events: list[DomainEvent] = aggregate.collect_events()

    def collect_events(self) -> list[DomainEvent]:
        return list(self.events)


class _Request:
    def __init__(self, aggregate: Aggregate) -> None:
        self.pending = _Pending(aggregate)
        self.wake = threading.Event()
        self.lead = False
        self.finished = False
        self.result: Saved | None = None
        self.error: BaseException | None = None

    def succeed(self, result: Saved) -> None:
        self.result, self.finished = result, True
        self.wake.set()

    def fail(self, error: BaseException) -> None:
        self.error, self.finished = error, True
        self.wake.set()

    def outcome(self) -> Saved:
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
        self._queue: list[_Request] = []
        self._leading = False
        self._last_batch = 1
        self._arrived = threading.Condition()

    def save(self, aggregate: Aggregate) -> Saved:
        """Make the aggregate's pending events durable; block until they are."""
        request = _Request(aggregate)
        with self._arrived:
            self._queue.append(request)
            lead = not self._leading
            self._leading = True
            self._arrived.notify()
        if not lead:
            request.wake.wait()
        if not request.finished:  # woken to lead: its own request heads the queue
            self._lead()
        return request.outcome()

    def _lead(self) -> None:
        try:
            self._gather()
            with self._arrived:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            self._flush(batch)
        finally:
            self._hand_over()

    def _gather(self) -> None:
        """Under busy traffic, wait briefly for as many callers as the last batch had."""
        if self._last_batch <= 1 or self._window <= 0:
            return
        deadline = time.monotonic() + self._window
        want = min(self._last_batch, self._max_batch)
        with self._arrived:
            while len(self._queue) < want and (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)

    def _hand_over(self) -> None:
        with self._arrived:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.wake.set()
            else:
                self._leading = False

    def _flush(self, batch: list[_Request]) -> None:
        started = time.perf_counter()
        self._last_batch = len(batch)
        try:
            self._save_together(batch)
        finally:
            for request in batch:
                if not request.finished:
                    request.fail(StoreFailedError("the batch holding this command failed"))
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - started)

    def _save_together(self, batch: list[_Request]) -> None:
        try:
            recordings = self._app.record(*[cast(Aggregate, r.pending) for r in batch])
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
            request.succeed(saved[request.pending.id])
