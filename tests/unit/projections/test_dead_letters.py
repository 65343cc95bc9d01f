"""A projection never stops on one event: an event whose rows cannot be written becomes
a dead letter and the rest applies, through `commit` and on the embedded follower;
`crm projections retry` re-applies the follower's dead letters from the event store."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid5

import pytest

from bench.workload import Workload
from consumers.batch_commit import commit
from consumers.follower import EventStoreFollower, applied_position
from consumers.key_stores import SqliteKeyStore
from consumers.keyring import Keyring
from consumers.projecting import Item
from consumers.store_sqlite import SqliteStore
from domain.base import DomainEvent
from domain.conversation import SatisfactionRated
from domain.task import TaskStarted
from projections import PROJECTIONS
from projections.base import Change, Rows, Upsert
from projections.dispatch import DispatchProjection
from services.event_store import CrmApplication, open_event_store
from tests.e2e.processes import CRM, eventually
from tests.unit.projections.memory import replay

EVENTS = list(Workload(seed=9).events(1500))
STARTED = sum(isinstance(e, TaskStarted) for e in EVENTS)


def support_with(applier: Any, name: str) -> DispatchProjection:
    """The support projection, with `applier` for TaskStarted."""
    base = PROJECTIONS["support"]
    assert isinstance(base, DispatchProjection)
    changed = DispatchProjection(name, 1, base.tables, dict(base.key_rules), dict(base.appliers))
    changed.appliers[TaskStarted] = applier
    return changed


def unwritable(event: Any, rows: Rows) -> list[Change]:
    """A row SQLite cannot hold (an integer beyond 64 bits): the write fails, not apply."""
    columns = PROJECTIONS["support"].tables[1].column_names
    key = uuid5(event.originator_id, "started")  # no other event changes this row
    row = dict.fromkeys(columns) | {"task_id": key, "percent": 2**70}
    return [Upsert("tasks", row)]


def ignored(event: Any, rows: Rows) -> list[Change]:
    return []


def dumped(store: SqliteStore, name: str) -> dict[str, list[dict[str, Any]]]:
    generation = store.live_generation(name)
    assert generation is not None
    return {t.name: store.dump(name, generation, t) for t in PROJECTIONS["support"].tables}


def test_an_event_whose_rows_cannot_be_written_is_a_dead_letter(tmp_path: Path) -> None:
    broken = support_with(unwritable, "broken")
    store = SqliteStore(tmp_path / "rm.db")
    generation = store.install(broken)
    items = [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(EVENTS)]
    dead = sum(
        commit(store, broken, generation, items[start : start + 400]).dead
        for start in range(0, len(items), 400)
    )
    assert dead == store.status("broken").dead_letters == STARTED > 0
    assert store.status("broken").positions == {("t", 0): len(EVENTS)}
    reference = replay(support_with(ignored, "reference"), EVENTS)
    assert dumped(store, "broken") == {
        name: reference.sorted_rows(name) for name in reference.tables
    }


@pytest.fixture
def app(tmp_path: Path) -> Iterator[CrmApplication]:
    opened = open_event_store(None, tmp_path, Keyring(SqliteKeyStore(tmp_path / "keys.db")))
    yield opened
    opened.close()


def record(app: CrmApplication, events: list[DomainEvent]) -> None:
    app.events.put(events)


def test_the_follower_goes_on_past_an_event_it_cannot_write(
    app: CrmApplication, tmp_path: Path
) -> None:
    record(app, EVENTS)
    store = SqliteStore(tmp_path / "readmodels.db")
    follower = EventStoreFollower(app, store, [support_with(unwritable, "broken")])
    while follower.step():
        pass
    assert follower.position() == app.head_position() == len(EVENTS)
    assert store.status("broken").dead_letters == STARTED


def test_the_follower_waits_out_a_full_database_and_resumes(
    app: CrmApplication, tmp_path: Path
) -> None:
    """SQLITE_FULL, as a full disk gives it, from a page limit on the read-model file."""
    store = SqliteStore(tmp_path / "readmodels.db")
    follower = EventStoreFollower(app, store, PROJECTIONS.values(), poll_interval=0.01)
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    record(app, EVENTS)
    thread = threading.Thread(target=follower.run)
    thread.start()
    try:
        trouble = eventually(lambda: follower.trouble, within=30, what="the full database")
        assert "full" in trouble
        assert applied_position(store) == 0
        store.conn.execute("PRAGMA max_page_count = 1073741823")
        eventually(
            lambda: applied_position(store) == len(EVENTS) or None, within=60, what="catch-up"
        )
        assert follower.trouble is None
    finally:
        follower.stop()
        thread.join()


def test_retry_reapplies_the_followers_dead_letters_from_the_event_store(
    app: CrmApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(app, EVENTS)
    store = SqliteStore(tmp_path / "readmodels.db")
    stats = PROJECTIONS["stats"]
    assert isinstance(stats, DispatchProjection)
    answers = sum(isinstance(e, SatisfactionRated) for e in EVENTS)
    with monkeypatch.context() as broken:  # a bug in the projection, fixed afterwards
        kind: type[DomainEvent] = SatisfactionRated
        broken.setitem(stats.appliers, kind, failing)
        follower = EventStoreFollower(app, store, [stats])
        while follower.step():
            pass
    assert store.status("stats").dead_letters == answers > 0
    store.close()
    env = {**os.environ, "CRM_DATA_DIR": str(tmp_path), "CRM_DATABASE_URL": ""}
    done = subprocess.run(
        [CRM, "projections", "retry", "stats"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{answers} dead letters retried, 0 still failing" in done.stdout
    reopened = SqliteStore(tmp_path / "readmodels.db")
    try:
        assert reopened.status("stats").dead_letters == 0
        generation = reopened.live_generation("stats")
        assert generation is not None
        spec = stats.tables[0]
        expected = replay(stats, EVENTS).sorted_rows(spec.name)
        assert reopened.dump("stats", generation, spec) == sorted(expected, key=spec.key_of)
    finally:
        reopened.close()


def failing(event: Any, rows: Rows) -> list[Change]:
    raise RuntimeError("a bug")
