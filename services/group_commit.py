"""Group commit: concurrent commands share one event-store transaction.

Every insert into the event store takes a table lock (that keeps notification ids in
commit order), so one transaction per command caps throughput at about a thousand per
second; saving many aggregates per transaction does not. Commands are coroutines on
one event loop (the API's); each `await committer.save(aggregate)` queues its decided
aggregate and resumes once it is durable.

Batches form on their own: while one batch is being written (on the committer's one
writer thread, so the event loop keeps deciding), every command that saves meanwhile
joins the next. Before a write the committer also waits, at most `window_ms`, for the
commands still deciding (`command()` counts them; a load from the store is a wait on
a thread), so a batch holds every concurrent command instead of whoever was first. A
lone command is written at once. Crossing threads costs once per batch, not per
command: the 16-caller benchmark went from ~4,300/s with a thread per caller and a
writer thread to ~10,000/s.

A conflict (IntegrityError) in a batch must not fail the others: the batch is then
saved again one aggregate at a time, and each caller gets its own answer or error.
The committer belongs to the event loop that first saves through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError

from domain.base import Aggregate, DomainEvent
from services.event_store import CrmApplication, versions_by_id

Saved = tuple[int, int]
"""(new version, global position of its last event)."""

_undecided: ContextVar[bool] = ContextVar("undecided", default=False)
"""True inside a command that has not saved yet (per asyncio task)."""


class _Request:
    """An aggregate's decided events (kept so a failed batch can be saved again: the
    event store pops pending events off an aggregate even when the save fails), and
    its outcome, set on the writer thread and handed to the caller on the loop."""

    def __init__(self, aggregate: Aggregate) -> None:
        self.id = aggregate.id
        self.events: list[DomainEvent] = aggregate.collect_events()
        self.result: Saved | None = None
        self.error: BaseException | None = None

    def collect_events(self) -> list[DomainEvent]:
        return list(self.events)

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None


class StoreFailedError(PersistenceError):
    """The batch holding this command failed for a reason other than a conflict."""


class DirectCommitter:
    """One transaction per command, each on a thread of `executor`: the baseline that
    group commit is measured against, and a committer for sequential scripts."""

    def __init__(self, app: CrmApplication, executor: Executor | None = None) -> None:
        self._app = app
        self._executor = executor

    @contextmanager
    def command(self) -> Iterator[None]:
        yield

    async def save(self, aggregate: Aggregate) -> Saved:
        loop = asyncio.get_running_loop()
        recordings = await loop.run_in_executor(self._executor, self._app.record, aggregate)
        return versions_by_id(recordings)[aggregate.id]

    async def aclose(self) -> None:
        return None


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
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")
        self._queue: list[tuple[_Request, asyncio.Future[Saved]]] = []
        self._undecided = 0  # commands in `command()` that have not queued a save yet
        self._everyone_queued: asyncio.Event | None = None  # while draining
        self._draining: asyncio.Task[None] | None = None
        self._closed = False

    @contextmanager
    def command(self) -> Iterator[None]:
        """Wrap a whole command (load, decide, save): while commands are deciding, a
        batch waits for them (at most `window_ms`)."""
        self._undecided += 1
        token = _undecided.set(True)
        try:
            yield
        finally:
            if _undecided.get():  # gave up without saving (refused, no-op, error)
                self._undecided -= 1
                self._wake_if_full()
            _undecided.reset(token)

    async def save(self, aggregate: Aggregate) -> Saved:
        """Make the aggregate's pending events durable; resume once they are."""
        if self._closed:
            raise StoreFailedError("the group committer is closed")
        if _undecided.get():
            _undecided.set(False)
            self._undecided -= 1
        future: asyncio.Future[Saved] = asyncio.get_running_loop().create_future()
        self._queue.append((_Request(aggregate), future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        self._wake_if_full()
        return await future

    async def aclose(self) -> None:
        """Refuse new saves, write what is queued, stop the writer thread."""
        self._closed = True
        if self._draining is not None:
            await self._draining
        self._writer.shutdown()

    def _full(self) -> bool:
        """Every command in progress has queued its save (or the batch is full)."""
        return self._undecided <= 0 or len(self._queue) >= self._max_batch

    def _wake_if_full(self) -> None:
        if self._everyone_queued is not None and self._queue and self._full():
            self._everyone_queued.set()

    async def _drain(self) -> None:
        """Write batches until the queue is empty."""
        loop = asyncio.get_running_loop()
        everyone_queued = self._everyone_queued = asyncio.Event()
        try:
            while self._queue:
                if not self._full() and self._window > 0:
                    everyone_queued.clear()
                    with suppress(TimeoutError):
                        await asyncio.wait_for(everyone_queued.wait(), self._window)
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                requests = [request for request, _ in batch]
                try:
                    await loop.run_in_executor(self._writer, self._flush, requests)
                except Exception as error:  # the writer itself is gone: answer anyway
                    failure = StoreFailedError("the batch holding this command failed")
                    failure.__cause__ = error
                    for request in requests:
                        if not request.finished:
                            request.error = failure
                for request, future in batch:
                    if future.cancelled():
                        continue
                    if request.error is not None:
                        future.set_exception(request.error)
                    else:
                        future.set_result(cast(Saved, request.result))
        finally:
            self._draining = self._everyone_queued = None

    def _flush(self, batch: list[_Request]) -> None:
        """On the writer thread: save `batch`; every request ends with an outcome."""
        started = time.perf_counter()
        failure = StoreFailedError("the batch holding this command failed")
        try:
            self._save_together(batch)
        except Exception as error:  # a bad batch must not take the committer down
            failure.__cause__ = error  # each caller of the batch sees why
        for request in batch:
            if not request.finished:
                request.error = failure
        if self._on_batch is not None:
            self._on_batch(len(batch), time.perf_counter() - started)

    def _save_together(self, batch: list[_Request]) -> None:
        try:
            recordings = self._app.record(*[cast(Aggregate, request) for request in batch])
        except IntegrityError as conflict:
            if len(batch) == 1:
                batch[0].error = conflict
                return
            for request in batch:
                self._save_together([request])
            return
        except PersistenceError as error:
            for request in batch:
                request.error = error
            return
        saved: dict[UUID, Saved] = versions_by_id(recordings)
        for request in batch:
            request.result = saved[request.id]
