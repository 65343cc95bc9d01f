"""A first read of a long history, from its newest snapshot against the whole history.

A customer of `EVENTS` profile changes and a conversation of as many messages (sealed,
as the API stores them) are each read from nothing, in a new `CurrentState` each time,
as a conversation's every read is, and a customer's first read after a restart: with
the snapshot the first read stored, and, the baseline, with no snapshot to start from
(`SNAPSHOT_EVERY` out of reach, the table emptied). Rounds alternate the two (the
machine drifts). Reported per store (PostgreSQL, and the embedded SQLite file) and kind:
the CPU milliseconds of a read (this process: decoding and applying; the database's
own work is not in it) and the wall milliseconds, the medians of `ROUNDS`, and the
ratios.

I/O: a fresh database and a temporary SQLite file.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench.databases import fresh_database
from consumers.keyring import Keyring, MemoryKeyStore
from domain.base import Aggregate, Context
from domain.conversation import Conversation
from domain.customer import Customer
from services import current_state
from services.api.loop_reads import event_source
from services.event_store import CrmApplication, open_event_store
from services.pg_reads import PostgresReads

EVENTS = {False: 10_000, True: 3_000}  # by `quick`; a conversation holds 10,000 messages at most
ROUNDS = 5


def run(database_url: str, kafka_bootstrap: str = "", quick: bool = False) -> dict[str, Any]:
    events = EVENTS[quick]
    figures: dict[str, Any] = {"events": events, "rounds": ROUNDS}
    for kind in (Customer, Conversation):
        with fresh_database(database_url) as url:
            figures[f"postgres_{kind.aggregate_type}"] = _measured(url, None, kind, events)
        with tempfile.TemporaryDirectory() as tmp:
            figures[f"sqlite_{kind.aggregate_type}"] = _measured(None, Path(tmp), kind, events)
    return figures


def _measured(
    database_url: str | None, data_dir: Path | None, kind: type[Aggregate], events: int
) -> dict[str, Any]:
    keys = MemoryKeyStore()
    app = open_event_store(database_url, data_dir, Keyring(keys))
    try:
        aggregate_id = _long_history(app, kind, events)

        def read() -> tuple[float, float]:
            return asyncio.run(_cold_read(app, keys, database_url, kind, aggregate_id))

        read()  # stores the snapshot
        (stored,) = app.snapshot_recorder.select_events(aggregate_id, desc=True, limit=1)
        with_snapshot: list[tuple[float, float]] = []
        whole: list[tuple[float, float]] = []
        for _ in range(ROUNDS):
            with_snapshot.append(read())
            with _without_snapshots(app, stored):
                whole.append(read())
    finally:
        app.close()
    cpu, wall = ([statistics.median(m[i] for m in runs) for runs in (with_snapshot, whole)]
                 for i in (0, 1))  # fmt: skip
    return {
        "cpu_ms_with_snapshot": round(cpu[0], 1),
        "cpu_ms_whole_history": round(cpu[1], 1),
        "cpu_ratio": round(cpu[0] / cpu[1], 3),
        "wall_ms_with_snapshot": round(wall[0], 1),
        "wall_ms_whole_history": round(wall[1], 1),
        "wall_ratio": round(wall[0] / wall[1], 3),
    }


def _long_history(app: CrmApplication, kind: type[Aggregate], events: int) -> Any:
    """The id of a customer of `events` profile changes, or of a conversation of a
    registration and `events - 1` messages (its customer's registration before it)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def ctx(n: int) -> Context:
        return Context(actor="bench", actor_department="sales",
                       occurred_at=at + timedelta(seconds=n), correlation_id="bench")  # fmt: skip

    ada = Customer.register(
        ctx(0), customer_id=uuid4(), name="Ada", email="ada@example.com", owner_department="sales"
    )
    long: Aggregate = ada
    if kind is Conversation:
        app.record(ada)
        talk = Conversation.open(
            ctx(0), conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
        )
        long = talk
    for n in range(1, events):
        if isinstance(long, Conversation):
            long.log_message(ctx(n), message_id=f"m{n}", direction="inbound", author="Ada",
                             content=f"Message {n} about the invoice")  # fmt: skip
        else:
            ada.update_profile(ctx(n), name=f"Ada {n}", company=f"Company {n}")
        if n % 1_000 == 0:
            app.record(long)
    app.record(long)
    return long.id


async def _cold_read(
    app: CrmApplication,
    keys: MemoryKeyStore,
    database_url: str | None,
    kind: type[Aggregate],
    aggregate_id: Any,
) -> tuple[float, float]:
    """CPU and wall milliseconds of one read from nothing, in a process that kept nothing."""
    source = event_source(app, keys, database_url)
    reads = current_state.CurrentState(source, Keyring(keys))
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        await reads.load(kind, aggregate_id)
        return (time.process_time() - cpu) * 1e3, (time.perf_counter() - wall) * 1e3
    finally:
        if isinstance(source, PostgresReads):
            await source.aclose()


@contextmanager
def _without_snapshots(app: CrmApplication, stored: Any) -> Iterator[None]:
    """No snapshot to start from, and none stored meanwhile; `stored` put back after."""
    every = current_state.SNAPSHOT_EVERY
    current_state.SNAPSHOT_EVERY = 2**62
    _delete_snapshots(app)
    try:
        yield
    finally:
        current_state.SNAPSHOT_EVERY = every
        app.snapshot_recorder.insert_events([stored])


def _delete_snapshots(app: CrmApplication) -> None:
    recorder: Any = app.snapshot_recorder
    table = recorder.events_table_name
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(f"DELETE FROM {table}")
