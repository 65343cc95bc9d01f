"""A customer's first read in a process, from its newest snapshot against its whole history.

One customer with a long history (`EVENTS`: each event a profile change, sealed as the
API stores it) is read cold, in a new `CurrentState` each time, as the API's first read
after a restart does: with its snapshot (stored by the first read), and, the baseline,
with no snapshot to start from (`SNAPSHOT_EVERY` out of reach, the table emptied).
Rounds alternate the two (the machine drifts). Reported per store (PostgreSQL, and the
embedded SQLite file): the CPU milliseconds of a read (this process: decoding and
applying; the database's own work is not in it) and the wall milliseconds, the medians
of `ROUNDS`, and the ratio.

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
from domain.base import Context
from domain.customer import Customer
from services import current_state
from services.api.loop_reads import event_source
from services.event_store import CrmApplication, open_event_store
from services.pg_reads import PostgresReads

EVENTS = {False: 20_000, True: 5_000}  # by `quick`
ROUNDS = 5


def run(database_url: str, kafka_bootstrap: str = "", quick: bool = False) -> dict[str, Any]:
    events = EVENTS[quick]
    figures: dict[str, Any] = {"events": events, "rounds": ROUNDS}
    with fresh_database(database_url) as url:
        figures["postgres"] = _measured(url, None, events)
    with tempfile.TemporaryDirectory() as tmp:
        figures["sqlite"] = _measured(None, Path(tmp), events)
    return figures


def _measured(database_url: str | None, data_dir: Path | None, events: int) -> dict[str, Any]:
    keys = MemoryKeyStore()
    app = open_event_store(database_url, data_dir, Keyring(keys))
    try:
        customer_id = _long_customer(app, events)
        asyncio.run(_cold_read(app, keys, database_url, customer_id))  # stores the snapshot
        (stored,) = app.customer_snapshots.select_events(customer_id, desc=True, limit=1)
        with_snapshot: list[tuple[float, float]] = []
        whole: list[tuple[float, float]] = []
        for _ in range(ROUNDS):
            with_snapshot.append(asyncio.run(_cold_read(app, keys, database_url, customer_id)))
            with _without_snapshots(app, stored):
                whole.append(asyncio.run(_cold_read(app, keys, database_url, customer_id)))
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


def _long_customer(app: CrmApplication, events: int) -> Any:
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def ctx(n: int) -> Context:
        return Context(actor="bench", actor_department="sales",
                       occurred_at=at + timedelta(seconds=n), correlation_id="bench")  # fmt: skip

    ada = Customer.register(
        ctx(0), customer_id=uuid4(), name="Ada", email="ada@example.com", owner_department="sales"
    )
    for n in range(1, events):
        ada.update_profile(ctx(n), name=f"Ada {n}", company=f"Company {n}")
        if n % 1_000 == 0:
            app.record(ada)
    app.record(ada)
    return ada.id


async def _cold_read(
    app: CrmApplication, keys: MemoryKeyStore, database_url: str | None, customer_id: Any
) -> tuple[float, float]:
    """CPU and wall milliseconds of one first read, in a process that kept nothing."""
    source = event_source(app, keys, database_url)
    reads = current_state.CurrentState(source, Keyring(keys))
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        await reads.load(Customer, customer_id)
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
        app.customer_snapshots.insert_events([stored])


def _delete_snapshots(app: CrmApplication) -> None:
    recorder: Any = app.customer_snapshots
    table = recorder.events_table_name
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(f"DELETE FROM {table}")
