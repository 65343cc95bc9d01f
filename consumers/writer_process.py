"""The projection writer process: `python -m consumers.writer_process BATCHES RESULTS`.

Started by `consumers.projection_writer.ProcessWriter` with two pipe descriptors and,
on stdin, a pickle of (store opener, projection name, generation, follow_live, logging
set-up). It imports only what writing needs, commits each batch that arrives until the
batch pipe closes, and answers on the result pipe (see `consumers.projection_writer`).
A receiver thread reads and decodes the next batch while the main thread waits on the
database. A database that cannot be reached when the child starts (it may be started
during an outage) is waited for, with the same notices as a batch that retries.

I/O: two pipes, stdin once, and the read-model database through the store it opens.
"""

from __future__ import annotations

import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection

import msgspec

from consumers.batch_retries import MAX_RETRY_DELAY, commit_batch
from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.projecting import Item
from consumers.readmodel_store import ReadModelStore
from consumers.writer_messages import Batch, Retrying, Written, encoder, items_of

Received = tuple[list[Item], int | None] | None
"""A decoded batch, or None once the runner has closed the pipe."""

_batch = msgspec.msgpack.Decoder(Batch)


def serve(
    batches: Connection,
    results: Connection,
    open_store: Callable[[], ReadModelStore],
    name: str,
    generation: int,
    *,
    follow_live: bool,
) -> None:
    """Commit each batch that arrives until the pipe closes; report every result.

    Once a batch is abandoned, the batches behind it are abandoned too: the runner
    starts over from the stored offsets, which must not have moved past it."""
    from projections import PROJECTIONS

    received: queue.Queue[Received | BaseException] = queue.Queue(maxsize=1)
    closed = threading.Event()
    threading.Thread(target=_receive, args=(batches, received, closed), daemon=True).start()
    store = _open(open_store, wait=closed.wait, results=results)
    if store is None:
        return  # the runner stopped while the database was away
    abandoned = False
    try:
        while (batch := received.get()) is not None:
            if isinstance(batch, BaseException):
                raise batch
            if abandoned:  # its offsets would pass over the abandoned batch's events
                written = Written(len(batch[0]), batch[1], abandoned=True)
            else:
                written = commit_batch(
                    store, PROJECTIONS[name], generation, batch, follow_live=follow_live,
                    wait=closed.wait,  # set when the runner closed the pipe: it is stopping
                    on_retry=lambda notice: results.send_bytes(encoder.encode(notice)),
                )  # fmt: skip
            abandoned = written.abandoned
            results.send_bytes(encoder.encode(written))
    except BrokenPipeError:
        return  # the runner went away while its last batches were written
    except Exception:  # reported to the runner, which stops: nothing is written half
        results.send_bytes(encoder.encode(Written(0, error=traceback.format_exc())))
    finally:
        store.close()


def _open(
    open_store: Callable[[], ReadModelStore],
    *,
    wait: Callable[[float], bool],
    results: Connection,
) -> ReadModelStore | None:
    """The store, once the database answers; None if the runner stops first."""
    delay = 0.1
    while True:
        began = time.time()
        try:
            return open_store()
        except DATABASE_UNAVAILABLE as error:
            notice = Retrying(str(error), delay, unavailable=True, at=began)
            results.send_bytes(encoder.encode(notice))
            if wait(delay):
                return None
            delay = min(delay * 2, MAX_RETRY_DELAY)


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


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner stops us, by closing the pipe
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    batches, results = (int(fd) for fd in sys.argv[1:3])
    setup = pickle.load(sys.stdin.buffer)  # noqa: S301 - written by our runner, nobody else
    opener, name, generation, follow_live, log_setup = setup
    if log_setup is not None:
        log_setup()
    serve(
        Connection(batches, writable=False),
        Connection(results, readable=False),
        opener, name, generation, follow_live=follow_live,
    )  # fmt: skip


if __name__ == "__main__":
    main()
