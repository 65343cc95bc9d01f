"""Writing a projection's batches: in a child process beside the reading runner, or inline.

Why a child: a replay spends about half of its CPU reading (kafka-python parses every
record in Python, then the runner opens personal fields) and half decoding events,
loading, applying and writing rows. One Python process runs both halves on one core.
`ProcessWriter` applies batches in a child process while the runner reads the next
ones, so the halves run on two cores. At most `AHEAD` batches are in the writer's
hands (one committing, one waiting): `submit` waits for the oldest result before it
hands over another, which bounds memory and keeps results in order.

Both writers commit through `consumers.batch_retries.commit_batch`, retried on the
store's transient errors until it commits, or abandoned (nothing written) when the
runner stops during a retry or a rebuild replaced the generation; every batch behind an
abandoned one is abandoned too. The runner then starts again on the live generation,
from its stored offsets, so nothing is lost.

The child (`python -m consumers.writer_process`, started with only the modules it
needs) talks over two one-way pipes of msgpack frames (`consumers.writer_messages`):
`Handed` records in batches one way; a `Written` per batch, in order, and `Retrying`
notices the other, which the runner reports. The child logs, if at all, as its runner
does (the runner's logging set-up is passed to it). Closing the batch pipe stops the
child after the batches in hand; their results still arrive. The child ignores SIGINT
and SIGTERM: it lives exactly as long as its runner holds the pipe (a killed runner
closes it too), so a terminal's Ctrl-C or a service manager's SIGTERM reaches the
runner, which stops it in order. A child that dies (`WriterDied`) is replaced by the
runner, which reads the batches it had in hand again from the stored offsets.

I/O: a child process and two pipes; the read-model database, through the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe
from typing import Protocol

import msgspec

from consumers.batch_retries import OnRetry, commit_batch, log_retry
from consumers.readmodel_store import ReadModelStore
from consumers.writer_messages import Batch, Handed, Retrying, Written, encoder, items_of
from projections.base import Projection

AHEAD = 2
"""Batches a writer process may hold: one committing while the next is received."""
PIPE_BYTES = 1 << 20
"""A batch frame is a few MB; the default 64 kB pipe buffer costs a wake-up per 64 kB."""


class WriterError(RuntimeError):
    """The writer process died or hit an error that retrying cannot fix."""


class WriterDied(WriterError):  # noqa: N818 - reads as what happened to the writer
    """The writer process exited without a word (killed, out of memory): start another.

    Nothing it had in hand is lost: a batch it did not commit left no row and no offset,
    so the runner reads it again from the stored offsets."""


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


class InlineWriter:
    """Writes each batch in the runner's own process, as soon as it is submitted.

    Once `stop` is set, a batch retrying through a database outage is abandoned.
    """

    def __init__(
        self,
        store: ReadModelStore,
        projection: Projection,
        generation: int,
        *,
        follow_live: bool,
        stop: threading.Event,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._target = (store, projection, generation)
        self._follow_live, self._wait = follow_live, stop.wait
        self._on_retry = on_retry or functools.partial(log_retry, projection.name)

    def submit(self, handed: list[Handed], lag: int | None) -> list[Written]:
        store, projection, generation = self._target
        written = commit_batch(
            store, projection, generation, (items_of(handed), lag),
            follow_live=self._follow_live, wait=self._wait, on_retry=self._on_retry,
        )  # fmt: skip
        return [written]

    def drain(self) -> list[Written]:
        return []

    def close(self) -> list[Written]:
        return []


class ProcessWriter:
    """Writes batches in a child process (see the module docstring).

    `stop` is checked while waiting for a result: once it is set the batch pipe is
    closed, so a child retrying through a database outage gives up at once.
    `log_setup` configures the child's logging as the runner's (it is pickled).
    """

    def __init__(
        self,
        store: ReadModelStore,
        projection: Projection,
        generation: int,
        *,
        follow_live: bool,
        stop: threading.Event,
        on_retry: OnRetry | None = None,
        log_setup: Callable[[], None] | None = None,
    ) -> None:
        self._stopping = stop.is_set
        self._on_retry = on_retry or functools.partial(log_retry, projection.name)
        batches_in, self._batches = Pipe(duplex=False)
        self._results, results_out = Pipe(duplex=False)
        for end in (self._batches, self._results):
            _widen(end)
        fds = (batches_in.fileno(), results_out.fileno())
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "consumers.writer_process", *map(str, fds)],
            stdin=subprocess.PIPE,
            pass_fds=fds,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        assert self._process.stdin is not None
        with self._process.stdin as setup:
            opener = store.opener()
            pickle.dump((opener, projection.name, generation, follow_live, log_setup), setup)
        batches_in.close()
        results_out.close()
        self._in_hand = 0

    @property
    def pid(self) -> int:
        return self._process.pid

    def submit(self, handed: list[Handed], lag: int | None) -> list[Written]:
        results = [self._take() for _ in range(self._in_hand - AHEAD + 1)]
        while self._in_hand and self._results.poll():
            results.append(self._take())
        try:
            self._batches.send_bytes(encoder.encode(Batch(lag, handed)))
        except OSError:
            raise self._failure() from None
        self._in_hand += 1
        return results

    def drain(self) -> list[Written]:
        return [self._take() for _ in range(self._in_hand)]

    def close(self) -> list[Written]:
        """Stop after the batches in hand (none if the child is already dead)."""
        self._batches.close()
        try:
            return self.drain()
        except WriterDied:
            return []
        finally:
            self._results.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _take(self) -> Written:
        """The oldest batch's result (waiting for it), logging retry notices on the way."""
        while True:
            while not self._results.poll(0.2):
                if self._stopping():
                    self._batches.close()
            try:
                report = _reports.decode(self._results.recv_bytes())
            except EOFError:
                raise self._failure() from None
            if isinstance(report, Written):
                break
            self._on_retry(report)
        self._in_hand -= 1
        if report.error is not None:
            raise WriterError(f"projection writer failed:\n{report.error}")
        return report

    def _failure(self) -> WriterDied:
        try:
            code: int | None = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return WriterDied(f"projection writer process exited unexpectedly (exit code {code})")


def _widen(end: Connection) -> None:
    with contextlib.suppress(OSError):  # above this system's pipe-max-size: slower, no harm
        fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


_reports = msgspec.msgpack.Decoder(Written | Retrying)
