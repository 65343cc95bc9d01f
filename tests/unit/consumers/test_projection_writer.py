"""The projection writers: a child process writes exactly what the inline writer writes,
results come back in order, and failures surface instead of hanging (SQLite files)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Pipe
from pathlib import Path

import msgspec
import psycopg
import pytest
from structlog.testing import capture_logs

from bench.workload import Workload
from consumers.batch_retries import commit_batch
from consumers.hand_over import hand_over
from consumers.projection_writer import AHEAD, BatchWriter, InlineWriter, ProcessWriter, WriterError
from consumers.sqlite_session import SqliteSession
from consumers.store_sqlite import SqliteStore
from consumers.writer_messages import Batch, Handed, Retrying, Written, encoder, items_of
from consumers.writer_process import serve
from projections import PROJECTIONS
from projections.base import Projection
from tests.unit.consumers.published import published

EVENTS = list(Workload(seed=21).events(1500))
BATCH = 300


def _handed(name: str) -> list[Handed]:
    return hand_over(*published(EVENTS), PROJECTIONS[name].personal_inputs)


def _feed(writer: BatchWriter, handed: list[Handed]) -> list[Written]:
    results: list[Written] = []
    for start in range(0, len(handed), BATCH):
        results += writer.submit(handed[start : start + BATCH], lag=len(handed) - start - BATCH)
    return results + writer.close()


def _tables(store: SqliteStore, name: str, generation: int) -> dict[str, object]:
    return {t.name: store.dump(name, generation, t) for t in PROJECTIONS[name].tables}


def _process_writer(store: SqliteStore, name: str, generation: int) -> ProcessWriter:
    projection = PROJECTIONS[name]
    return ProcessWriter(store, projection, generation, follow_live=False, stop=threading.Event())


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_a_writer_process_writes_what_the_inline_writer_writes(tmp_path: Path, name: str) -> None:
    projection, handed = PROJECTIONS[name], _handed(name)
    inline_store, child_store = SqliteStore(tmp_path / "inline.db"), SqliteStore(tmp_path / "c.db")
    inline = inline_store.install(projection)
    by_child = child_store.install(projection)
    inline_writer = InlineWriter(
        inline_store, projection, inline, follow_live=False, stop=threading.Event()
    )
    _feed(inline_writer, handed)
    results = _feed(_process_writer(child_store, name, by_child), handed)
    assert sum(r.applied + r.skipped + r.dead for r in results) == len(EVENTS)
    assert _tables(child_store, name, by_child) == _tables(inline_store, name, inline)
    assert child_store.status(name).events == inline_store.status(name).events > 0


def test_results_come_back_in_order_with_at_most_two_batches_in_hand(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "rm.db")
    writer = _process_writer(store, "stats", store.install(PROJECTIONS["stats"]))
    handed, returned = _handed("stats"), 0
    for number, start in enumerate(range(0, len(handed), BATCH), start=1):
        results = writer.submit(handed[start : start + BATCH], lag=number)
        assert [r.lag for r in results] == list(range(returned + 1, returned + 1 + len(results)))
        returned += len(results)
        assert number - returned <= AHEAD
    assert [r.lag for r in writer.close()] == list(range(returned + 1, number + 1))


def test_a_dead_writer_process_is_an_error_not_a_hang(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "rm.db")
    writer = _process_writer(store, "stats", store.install(PROJECTIONS["stats"]))
    os.kill(writer.pid, signal.SIGKILL)
    with pytest.raises(WriterError, match="exited unexpectedly"):
        _write_on(writer, _handed("stats")[:BATCH])


def _write_on(writer: BatchWriter, batch: list[Handed]) -> None:
    for _ in range(AHEAD + 1):  # the pipe may take a batch or two before it breaks
        writer.submit(batch, lag=0)
    writer.drain()


def test_an_event_that_does_not_decode_is_a_dead_letter_and_the_rest_applies(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "rm.db")
    writer = _process_writer(store, "stats", store.install(PROJECTIONS["stats"]))
    handed = _handed("stats")[:BATCH]
    event = msgspec.json.decode(handed[7].event or b"")
    origin = {name: event[name] for name in ("originator_id", "originator_version")}
    broken = msgspec.json.encode({"type": "TaskCreated", "title": 12, **origin})
    handed[7] = handed[7]._replace(event=broken)
    (written,) = _feed(writer, handed)
    assert (written.dead, written.applied + written.skipped) == (1, BATCH - 1)
    assert store.status("stats").dead_letters == 1


def test_a_writer_following_the_live_generation_abandons_a_replaced_one(tmp_path: Path) -> None:
    store, projection = SqliteStore(tmp_path / "rm.db"), PROJECTIONS["support"]
    old = store.install(projection)
    store.switch(projection, store.create_generation(projection))  # a rebuild; drops `old`
    writer = ProcessWriter(store, projection, old, follow_live=True, stop=threading.Event())
    (written,) = _feed(writer, _handed("support")[:BATCH])
    assert written.abandoned
    assert written.applied == 0


def test_stopping_ends_the_retries_of_a_writer_whose_tables_are_gone(tmp_path: Path) -> None:
    store, projection = SqliteStore(tmp_path / "rm.db"), PROJECTIONS["support"]
    generation = store.create_generation(projection)
    store.drop_generation("support", generation)  # every attempt fails, retried forever
    stop = threading.Event()
    writer = ProcessWriter(store, projection, generation, follow_live=False, stop=stop)
    writer.submit(_handed("support")[:BATCH], lag=0)
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with capture_logs() as logs:
        (written,) = writer.close()
    assert written.abandoned
    assert time.monotonic() - started < 10
    retries = [entry for entry in logs if entry["event"] == "batch_retry"]
    assert retries  # the child's failed attempts, logged by the runner
    assert "no such table" in retries[0]["error"]


def test_no_batch_is_written_after_an_abandoned_one(tmp_path: Path) -> None:
    """The child's loop (`serve`, in a thread here): a batch behind an abandoned one
    must not commit, or its offsets would pass over the abandoned batch's events."""
    store, projection = SqliteStore(tmp_path / "rm.db"), PROJECTIONS["stats"]
    generation = store.install(projection)
    positions = f"stats_v{generation}___positions"
    store.conn.execute(f"ALTER TABLE {positions} RENAME TO hidden")  # every attempt fails
    batches_in, batches = Pipe(duplex=False)
    results, results_out = Pipe(duplex=False)
    child = threading.Thread(
        target=serve, args=(batches_in, results_out, store.opener(), "stats", generation),
        kwargs={"follow_live": False},
    )  # fmt: skip
    child.start()
    handed = _handed("stats")
    for lag, start in ((1, 0), (0, BATCH)):
        batches.send_bytes(encoder.encode(Batch(lag, handed[start : start + BATCH])))
    reports = msgspec.msgpack.Decoder(Written | Retrying)
    while not (isinstance(r := reports.decode(results.recv_bytes()), Retrying) and r.delay > 0.3):
        pass  # the first batch now waits out a back-off of 0.4 s or more
    store.conn.execute(f"ALTER TABLE hidden RENAME TO {positions}")  # the second could commit
    batches.close()  # the runner stops: the first batch is abandoned
    child.join()
    assert [reports.decode(results.recv_bytes()) for _ in range(2)] == [
        Written(BATCH, lag=1, abandoned=True),
        Written(BATCH, lag=0, abandoned=True),
    ]
    assert store.status("stats").events == 0


class _WaitsThroughAnOutage(SqliteStore):
    """A store whose every session waits `WAIT_S` for a connection, then gets none."""

    WAIT_S = 0.5
    transient_errors = (*SqliteStore.transient_errors, psycopg.OperationalError)

    @contextmanager
    def session(self, projection: Projection, generation: int) -> Iterator[SqliteSession]:
        time.sleep(self.WAIT_S)
        raise psycopg.OperationalError("couldn't get a connection after 0.50 sec")


def test_a_failed_attempt_is_dated_from_when_it_began(tmp_path: Path) -> None:
    """An attempt that waited through the outage and failed after the database came
    back says nothing about the database now: the runner reads its date against the
    last time it saw the database back (`consumers.outage`), so it carries its start."""
    store, projection = _WaitsThroughAnOutage(tmp_path / "rm.db"), PROJECTIONS["stats"]
    generation = store.install(projection)
    notices: list[Retrying] = []
    batch = (items_of(_handed("stats")[:10]), 0)
    began = time.time()
    written = commit_batch(
        store, projection, generation, batch, follow_live=False,
        wait=lambda seconds: True, on_retry=notices.append,  # the runner stops: one attempt
    )  # fmt: skip
    assert written.abandoned
    (notice,) = notices
    assert notice.unavailable
    assert began <= notice.at < began + _WaitsThroughAnOutage.WAIT_S / 2
