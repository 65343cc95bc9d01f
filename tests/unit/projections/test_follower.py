"""The embedded follower: projections follow the event store in process (SQLite)."""

from __future__ import annotations

from pathlib import Path

from bench.workload import Workload
from consumers.follower import EventStoreFollower, applied_position, rebuild_from_store
from consumers.key_stores import SqliteKeyStore
from consumers.keyring import Keyring
from consumers.store_sqlite import SqliteStore
from projections import PROJECTIONS
from services.event_store import open_event_store
from tests.unit.projections.memory import replay


def test_follower_applies_new_events_once_and_resumes(tmp_path: Path) -> None:
    keyring = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
    app = open_event_store(None, tmp_path, keyring)
    workload = Workload(seed=3)
    events = list(workload.events(1200))
    store = SqliteStore(tmp_path / "readmodels.db")
    try:
        app.events.put(events[:600])
        follower = EventStoreFollower(app, store, PROJECTIONS.values(), batch_size=250)
        while follower.step():
            pass
        assert applied_position(store) == app.head_position() == 600
        app.events.put(events[600:])
        restarted = EventStoreFollower(app, store, PROJECTIONS.values())
        while restarted.step():  # a restart resumes where the stored position says
            pass
        assert applied_position(store) == 1200
        expected = replay(PROJECTIONS["support"], events).sorted_rows("tasks")
        generation = store.live_generation("support")
        assert generation is not None
        spec = next(t for t in PROJECTIONS["support"].tables if t.name == "tasks")
        assert store.dump("support", generation, spec) == sorted(
            expected, key=lambda r: r["task_id"]
        )
        old = store.live_generation("stats")
        assert rebuild_from_store(app, store, PROJECTIONS["stats"]) != old
        assert applied_position(store) == 1200
    finally:
        store.close()
        app.close()
