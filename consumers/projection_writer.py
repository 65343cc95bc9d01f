"""Writing a projection's batches: in a child process beside the reading runner, or inline.

Why a child: a replay spends about half of its CPU reading (kafka-python parses every
record in Python, then the runner opens personal fields) and half decoding events,
loading, applying and writing rows. One Python process runs both halves on one core.
`ProcessWriter` applies batches in a child process while the runner reads the next
ones, so the halves run on two cores. At most `AHEAD` batches are in the writer's
hands (one committing, one waiting): `submit` waits for the oldest result before it
hands over another, which bounds memory and keeps results in order.

Both writers commit through `commit_batch`: rows, offsets and applied versions in one
read-model transaction (`consumers.projecting.project`), retried on the store's
transient errors until it commits. A batch is *abandoned* (nothing written) when the
runner stops during a retry, or when the live generation it was written to has been
replaced by a rebuild (its schema may be gone): the runner then starts again on the
new generation, from that generation's stored offsets, so nothing is lost.

Child protocol: two one-way pipes of msgpack frames. Runner -> writer: a `_Batch` of
`Handed` records (events as `domain.codec` JSON, already opened; the pipe never leaves
the machine). Writer -> runner: a `Written` per batch, in order. In the child a
receiver thread reads and decodes the next batch while the main thread waits on the
database. Closing the batch pipe stops the child after the batches in hand; their
results still arrive. The child ignores SIGINT and SIGTERM: it lives exactly as long
as its runner holds the pipe (a killed runner closes it too), so a terminal's Ctrl-C
or a service manager's SIGTERM reaches the runner, which stops it in order.

I/O: a child process, two pipes and a thread; the read-model database, through the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import NamedTuple, Protocol

import msgspec
import structlog

from consumers.projecting import Item, project
from consumers.readmodel_store import ReadModelStore
from domain import codec
from projections.base import Projection

log = structlog.get_logger("crm.projections")

AHEAD = 2
"""Batches a writer process may hold: one committing while the next is received."""
MAX_RETRY_DELAY = 5.0
PIPE_BYTES = 1 << 20
"""A batch frame is a few MB; the default 64 kB pipe buffer costs a wake-up per 64 kB."""


class Handed(NamedTuple):
    """One record as a runner hands it to a writer: its event as current-schema codec
    JSON (opened as far as the projection needs), or None and the error that makes it
    a dead letter. The writer decodes the events: on its side of the pipe."""

    topic: str
    partition: int
    offset: int
    position: int
    value: bytes
    event: bytes | None
    error: str | None = None


def items_of(handed: Sequence[Handed]) -> list[Item]:
    """The writer's items: events decoded; one that does not decode is a dead letter."""
    return [_item(h) for h in handed]


def _item(h: Handed) -> Item:
    if h.event is None:
        return Item(h.topic, h.partition, h.offset, h.position, h.value, None, h.error)
    try:
        event = codec.decode_tagged(h.event)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        return Item(h.topic, h.partition, h.offset, 0, h.value, None, f"InvalidEvent: {error}")
    return Item(h.topic, h.partition, h.offset, h.position, h.value, event)


class WriterError(RuntimeError):
    """The writer process died or hit an error that retrying cannot fix."""


class Written(msgspec.Struct, array_like=True, frozen=True):
    """What became of one batch: counts and commit time, or `abandoned` (nothing written)."""

    events: int
    lag: int | None = None
    applied: int = 0
    skipped: int = 0
    dead: int = 0
    seconds: float = 0.0
    abandoned: bool = False
    error: str | None = None


class BatchWriter(Protocol):
    """Takes a runner's batches; their results come back in order, maybe later."""

    def submit(self, handed: list[Handed], lag: int | None) -> list[Written]:
        """Hand over a batch; the results that came back meanwhile, oldest first."""
        ...

    def drain(self) -> list[Written]:
        """Wait until every batch handed over is done; their results."""
        ...

    def close(self) -> list[Written]:
        """Stop after the batches in hand; the results of those that finished."""
        ...


def commit_batch(
    store: ReadModelStore,
    projection: Projection,
    generation: int,
    batch: tuple[list[Item], int | None],
    *,
    follow_live: bool,
    wait: Callable[[float], bool],
) -> Written:
    """Apply a batch (items, lag) in one transaction; retry transient errors (see above).

    `wait(seconds)` pauses between attempts; True means the runner stops.
    """
    items, lag = batch
    delay = 0.1
    while True:
        started = time.perf_counter()
        try:
            with store.session(projection, generation) as session:
                outcome = project(session, projection, items, lag)
        except store.transient_errors as error:
            if follow_live and _replaced(store, projection.name, generation):
                return Written(len(items), lag, abandoned=True)
            log.warning("batch_retry", projection=projection.name, error=str(error), delay=delay)
            if wait(delay):
                return Written(len(items), lag, abandoned=True)
            delay = min(delay * 2, MAX_RETRY_DELAY)
            continue
        seconds = time.perf_counter() - started
        return Written(len(items), lag, outcome.applied, outcome.skipped, outcome.dead, seconds)


def _replaced(store: ReadModelStore, name: str, generation: int) -> bool:
    try:
        return store.live_generation(name) != generation
    except store.transient_errors:
        return False  # the database is still away: keep retrying


class InlineWriter:
    """Writes each batch in the runner's own process, as soon as it is submitted."""

    def __init__(
        self,
        store: ReadModelStore,
        projection: Projection,
        generation: int,
        *,
        follow_live: bool,
        wait: Callable[[float], bool],
    ) -> None:
        self._target = (store, projection, generation)
        self._follow_live, self._wait = follow_live, wait

    def submit(self, handed: list[Handed], lag: int | None) -> list[Written]:
        batch = (items_of(handed), lag)
        return [commit_batch(*self._target, batch, follow_live=self._follow_live, wait=self._wait)]

    def drain(self) -> list[Written]:
        return []

    def close(self) -> list[Written]:
        return []


class ProcessWriter:
    """Writes batches in a child process (see the module docstring).

    `stopping()` is asked while waiting for a result: once it answers True the batch
    pipe is closed, so a child retrying through a database outage gives up at once.
    """

    def __init__(
        self,
        store: ReadModelStore,
        projection: Projection,
        generation: int,
        *,
        follow_live: bool,
        stopping: Callable[[], bool],
    ) -> None:
        self._stopping = stopping
        context = multiprocessing.get_context("spawn")
        batches_in, self._batches = context.Pipe(duplex=False)
        self._results, results_out = context.Pipe(duplex=False)
        for end in (self._batches, self._results):
            _widen(end)
        self._process = context.Process(
            target=serve,
            args=(batches_in, results_out, store.opener(), projection.name, generation),
            kwargs={"follow_live": follow_live},
            name=f"crm-writer-{projection.name}",
        )
        self._process.start()
        batches_in.close()
        results_out.close()
        self._in_hand = 0

    def submit(self, handed: list[Handed], lag: int | None) -> list[Written]:
        results = [self._take() for _ in range(self._in_hand - AHEAD + 1)]
        while self._in_hand and self._results.poll():
            results.append(self._take())
        try:
            self._batches.send_bytes(_encoder.encode(_Batch(lag, handed)))
        except OSError:
            raise self._failure() from None
        self._in_hand += 1
        return results

    def drain(self) -> list[Written]:
        return [self._take() for _ in range(self._in_hand)]

    def close(self) -> list[Written]:
        self._batches.close()
        try:
            return self.drain()
        finally:
            self._results.close()
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()

    def _take(self) -> Written:
        """The oldest batch's result (waiting for it)."""
        while not self._results.poll(0.2):
            if self._stopping():
                self._batches.close()
        self._in_hand -= 1
        try:
            written = _written.decode(self._results.recv_bytes())
        except EOFError:
            raise self._failure() from None
        if written.error is not None:
            raise WriterError(f"projection writer failed:\n{written.error}")
        return written

    def _failure(self) -> WriterError:
        self._process.join(timeout=5)
        code = self._process.exitcode
        return WriterError(f"projection writer process exited unexpectedly (exit code {code})")


def _widen(end: Connection) -> None:
    with contextlib.suppress(OSError):  # above this system's pipe-max-size: slower, no harm
        fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


# --- the wire between runner and writer ------------------------------------------------


class _Batch(msgspec.Struct, array_like=True):
    lag: int | None
    handed: list[Handed]


_encoder = msgspec.msgpack.Encoder()
_batch = msgspec.msgpack.Decoder(_Batch)
_written = msgspec.msgpack.Decoder(Written)

Received = tuple[list[Item], int | None] | None
"""A decoded batch, or None once the runner has closed the pipe."""


# --- the child ----------------------------------------------------------------------


def serve(
    batches: Connection,
    results: Connection,
    open_store: Callable[[], ReadModelStore],
    name: str,
    generation: int,
    *,
    follow_live: bool,
) -> None:
    """The writer process: commit each batch that arrives until the pipe closes."""
    from projections import PROJECTIONS

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    received: queue.Queue[Received | BaseException] = queue.Queue(maxsize=1)
    closed = threading.Event()
    threading.Thread(target=_receive, args=(batches, received, closed), daemon=True).start()
    store = open_store()
    try:
        while (batch := received.get()) is not None:
            if isinstance(batch, BaseException):
                raise batch
            written = commit_batch(
                store, PROJECTIONS[name], generation, batch, follow_live=follow_live,
                wait=closed.wait,  # set when the runner closed the pipe: it is stopping
            )  # fmt: skip
            results.send_bytes(_encoder.encode(written))
    except BrokenPipeError:
        return  # the runner went away while its last batches were written
    except Exception:  # reported to the runner, which stops: nothing is written half
        results.send_bytes(_encoder.encode(Written(0, error=traceback.format_exc())))
    finally:
        store.close()


def _receive(
    batches: Connection,
    received: queue.Queue[Received | BaseException],
    closed: threading.Event,
) -> None:
    """Receiver thread: read and decode batches ahead of the committing main thread."""
    try:
        while True:
            try:
                frame = batches.recv_bytes()
            except EOFError:
                return
            batch = _batch.decode(frame)
            received.put((items_of(batch.handed), batch.lag))
    except Exception as error:  # handed to the main thread, which reports it
        received.put(error)
    finally:
        closed.set()
        received.put(None)
