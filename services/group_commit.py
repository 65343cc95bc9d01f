"""Group commit: concurrent commands share one event-store transaction.

Every insert into the event store takes a table lock (that keeps notification ids in
commit order), so one transaction per command caps throughput at about a thousand per
second; saving many aggregates per transaction does not. Commands are coroutines on
one event loop (the API's); each `await committer.save(aggregate)` queues its decided
aggregate and resumes once it is durable.

Batches form on their own: while one batch is being written, every command that saves
meanwhile joins the next. A batch takes at most half of the commands in flight (those
inside `command()`: deciding, queued or just written), so that two groups alternate,
one deciding while the other is written: at 16 callers two batches of 8 in turn did
~6,000 commands/s where one batch of 16 at a time did ~4,000, since a batch of 16 costs
nearly as much as one of 8 and nobody decided during it. Before a write the committer
waits, at most `window_ms`, for the commands still deciding until the batch has its
half (`command()` counts them; a load from the store is a wait on a thread). A lone
command is written at once.

On PostgreSQL a batch is awaited on the event loop (`AsyncBatchWriter`, one connection);
other stores save it on the committer's one writer thread. The thread costs two
hand-offs per batch, 0.5-0.8 ms measured on a 2-core VM; commands themselves are
coroutines because a thread per caller costs more still (~110 us of switching per
command).

A conflict (IntegrityError: another process saved an aggregate first) in a batch must
not fail the others. On PostgreSQL the error names the aggregates whose versions were
taken (`BatchConflictError`): their commands fail, and the others are saved again as
one batch. Otherwise the batch is saved again one aggregate at a time. With two API
processes on hot aggregates, a batch saved one by one cost a transaction per command,
each under the table lock the other process waits for. A batch refused for events about
an erased customer (`ErasedSubjectError`, which names their aggregates: another process
erased the customer and this one does not know it yet) fails their commands and saves
the others again alike. Each caller gets its own answer or error.
The committer belongs to the event loop that first saves through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import cast

from eventsourcing.persistence import IntegrityError, PersistenceError

from domain.base import Aggregate, DomainEvent
from services.batch_refusals import BatchConflictError, ErasedSubjectError
from services.event_store import CrmApplication, Saved

_undecided: ContextVar[bool] = ContextVar("undecided", default=False)
"""True inside a command that has not saved yet (per asyncio task)."""


class _Request:
    """An aggregate's decided events (kept so a failed batch can be saved again: the
    event store pops pending events off an aggregate even when the save fails), and
    its outcome, set by the batch's write and handed to the caller's future."""

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


class _Deciding:
    """`GroupCommitter.command()`: counts a command in from its start to its end, and as
    undecided until it saves. A class rather than a `@contextmanager` generator, which
    every command enters: the generator's machinery made 6 Python calls a command, this
    makes 4."""

    __slots__ = ("_committer", "_token")

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer

    def __enter__(self) -> None:
        committer = self._committer
        committer._undecided += 1
        committer._in_command += 1
        self._token = _undecided.set(True)

    def __exit__(self, *_: object) -> None:
        committer = self._committer
        committer._in_command -= 1
        if _undecided.get():  # gave up without saving (refused, no-op, error)
            committer._undecided -= 1
            committer._wake_if_full()
        _undecided.reset(self._token)


class StoreFailedError(PersistenceError):
    """The batch holding this command failed for a reason other than a conflict."""


class DirectCommitter:
    """One transaction per command, each on a worker thread of the loop's default
    executor: the baseline that group commit is measured against, and a committer for
    sequential scripts."""

    def __init__(self, app: CrmApplication) -> None:
        self._app = app

    @contextmanager
    def command(self) -> Iterator[None]:
        yield

    async def save(self, aggregate: Aggregate) -> Saved:
        saved = await asyncio.to_thread(self._app.saved, aggregate)
        return saved[aggregate.id.int]

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
        self._async_writer = app.async_writer()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")
        self._queue: list[tuple[_Request, asyncio.Future[Saved]]] = []
        self._undecided = 0  # commands in `command()` that have not queued a save yet
        self._in_command = 0  # commands in `command()`: deciding, queued, being written
        self._everyone_queued: asyncio.Event | None = None  # while draining
        self._draining: asyncio.Task[None] | None = None
        self._closed = False

    def command(self) -> _Deciding:
        """Wrap a whole command (load, decide, save): while commands are deciding, a
        batch waits for them (at most `window_ms`)."""
        return _Deciding(self)

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
        """Refuse new saves, write what is queued, close the writer's connection and thread."""
        self._closed = True
        if self._draining is not None:
            await self._draining
        if self._async_writer is not None:
            await self._async_writer.aclose()
        self._writer.shutdown()

    def _limit(self) -> int:
        """Half of the commands in flight (deciding, queued, just written), at most
        `max_batch`."""
        in_flight = max(self._in_command, len(self._queue))
        return max(1, min(self._max_batch, (in_flight + 1) // 2))

    def _full(self) -> bool:
        """Every command in progress has queued its save, or the batch has its share."""
        return self._undecided <= 0 or len(self._queue) >= self._limit()

    def _wake_if_full(self) -> None:
        if self._everyone_queued is not None and self._queue and self._full():
            self._everyone_queued.set()

    async def _drain(self) -> None:
        """Write batches until the queue is empty."""
        everyone_queued = self._everyone_queued = asyncio.Event()
        try:
            while self._queue:
                if not self._full() and self._window > 0:
                    everyone_queued.clear()
                    with suppress(TimeoutError):
                        async with asyncio.timeout(self._window):  # no task, unlike wait_for
                            await everyone_queued.wait()
                limit = self._limit()
                batch = self._queue[:limit]
                del self._queue[:limit]
                await self._flush([request for request, _ in batch])
                for request, future in batch:
                    if future.cancelled():
                        continue
                    if request.error is not None:
                        future.set_exception(request.error)
                    else:
                        future.set_result(cast(Saved, request.result))
        finally:
            self._draining = self._everyone_queued = None

    async def _flush(self, batch: list[_Request]) -> None:
        """Save `batch`; every request ends with an outcome."""
        started = time.perf_counter()
        failure = StoreFailedError("the batch holding this command failed")
        try:
            await self._save_together(batch)
        except Exception as error:  # a bad batch must not take the committer down
            failure.__cause__ = error  # each caller of the batch sees why
        for request in batch:
            if not request.finished:
                request.error = failure
        if self._on_batch is not None:
            self._on_batch(len(batch), time.perf_counter() - started)

    async def _save_together(self, batch: list[_Request]) -> None:
        try:
            saved = await self._record(cast(Sequence[Aggregate], batch))
        except (IntegrityError, ErasedSubjectError) as refused:
            await self._after_refusal(batch, refused)
            return
        except PersistenceError as error:
            for request in batch:
                request.error = error
            return
        for request in batch:
            request.result = saved[request.id.int]

    async def _after_refusal(
        self, batch: list[_Request], refused: IntegrityError | ErasedSubjectError
    ) -> None:
        """Fail the commands the store refused (versions another process took, events
        about an erased customer); save the others again, as one batch. When the error
        does not say which, each command on its own."""
        named = (BatchConflictError, ErasedSubjectError)
        taken = refused.aggregate_ids if isinstance(refused, named) else ()
        lost = [request for request in batch if request.id in taken]
        if not lost:  # the error does not say which
            if len(batch) == 1:
                batch[0].error = refused
            else:
                for request in batch:
                    await self._save_together([request])
            return
        for request in lost:
            request.error = refused
        if rest := [request for request in batch if request.id not in taken]:
            await self._save_together(rest)

    async def _record(self, aggregates: Sequence[Aggregate]) -> dict[int, Saved]:
        """One transaction: awaited on the loop (PostgreSQL), else on the writer thread;
        what each aggregate's save gave, by its id's int. `aggregates` are the batch's
        requests, which hand over their events as an aggregate does (`collect_events`)."""
        if self._async_writer is not None:
            return await self._app.saved_async(self._async_writer, *aggregates)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._app.saved, *aggregates)
