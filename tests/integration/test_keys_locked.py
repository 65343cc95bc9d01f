"""Embedded: another process holding keys.db's lock holds up only what needs a data key.

keys.db keeps a rollback journal (`consumers.key_stores`), so a connection holding its
exclusive lock (a backup, `sqlite3` in a shell) holds off its readers too. A request
needing a key then waits for the lock off the event loop (`services.api.local_events`
`StoreEvents`), and the loop answers everything else meanwhile: here /healthz is
answered while the keyed request is still waiting, and the lock is let go only after
that answer. (Keys read and created on the loop, the loop stopped for the store's whole
busy wait, 5 s: /healthz came after the keyed request's 503.)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import httpx
import pytest
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder

from consumers.key_stores import SqliteKeyStore, locked
from services.api.local_events import StoreEvents
from tests.integration.api_support import EmbeddedApi, embedded_api, served

WAIT = 60.0  # generous: nothing here is timed, each wait ends on an event


@pytest.fixture
def api(tmp_path: Path) -> Iterator[EmbeddedApi]:
    with embedded_api(tmp_path) as api:
        yield api


class KeyReads:
    """Marks when a read of keys enters `StoreEvents.keys` and when it has left it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.left = threading.Event(), threading.Event()
        read = StoreEvents.keys

        async def keys(source: StoreEvents, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
            self.entered.set()
            try:
                return await read(source, subjects)
            finally:
                self.left.set()

        monkeypatch.setattr(StoreEvents, "keys", keys)


def exclusive(path: Path) -> sqlite3.Connection:
    """Another connection holding `path`'s exclusive lock (readers held off too)."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


@pytest.mark.parametrize("keyed", ["a page of customers", "a registration"])
def test_a_locked_key_file_holds_up_the_requests_needing_a_key_and_no_others(
    api: EmbeddedApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyed: str
) -> None:
    sales = api.token("sam", "sales", "agent")
    with served(api.app) as base, httpx.Client(base_url=base, timeout=WAIT) as http:
        body = {"name": "Ada", "email": "ada@x.com"}
        assert http.post("/v1/customers", json=body, headers=sales).status_code == 201
        api.catch_up()  # a row to list, sealed under Ada's key
        reads = KeyReads(monkeypatch)
        holder = exclusive(tmp_path / "keys.db")
        try:
            with ThreadPoolExecutor(1) as pool:
                if keyed == "a registration":  # a new customer's key: read, then made
                    call = pool.submit(http.post, "/v1/customers", json=body, headers=sales)
                else:  # a page's keys are read anew each time
                    call = pool.submit(http.get, "/v1/departments/sales/customers", headers=sales)
                assert reads.entered.wait(WAIT), "the keyed request reads keys"
                assert http.get("/healthz").status_code == 200
                assert not reads.left.is_set(), "/healthz waited for the keyed request"
                holder.execute("ROLLBACK")
                answer = call.result(WAIT)
        finally:
            holder.close()
    assert answer.status_code == (201 if keyed == "a registration" else 200), answer.text
    if keyed != "a registration":
        assert answer.json()["items"][0]["email"] == "ada@x.com"  # opened with its key


def test_a_key_is_created_off_the_loop_while_the_key_file_is_locked(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "keys.db")
    source = StoreEvents(POPOApplicationRecorder(), POPOAggregateRecorder(), store)
    subject, key = uuid4(), b"k" * 32
    made: Future[bytes | None] = Future()

    async def main() -> None:
        holder = exclusive(tmp_path / "keys.db")
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_create, source, subject, key, made)
                await anyio.wait_all_tasks_blocked()  # the loop runs on: the creation waits
                assert not made.done()
                holder.execute("ROLLBACK")
        finally:
            holder.close()

    try:
        anyio.run(main)
    finally:
        source.close()
    assert made.result(0) == key == store.load(subject)


async def _create(
    source: StoreEvents, subject: UUID, key: bytes, made: Future[bytes | None]
) -> None:
    made.set_result(await source.create_key(subject, key))


def test_a_creation_refused_at_its_commit_holds_nothing_and_stores_nothing(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "keys.db")
    at_once = store.at_once()
    reader = sqlite3.connect(tmp_path / "keys.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM crm_subject_keys").fetchall()  # its shared lock
        subject = uuid4()
        with pytest.raises(sqlite3.OperationalError) as refused:
            at_once.create(subject, b"a" * 32)  # its commit needs the exclusive lock
        assert locked(refused.value)
        reader.execute("COMMIT")
        assert store.create(subject, b"s" * 32) == b"s" * 32  # no lock held, no key stored
        assert at_once.create(subject, b"a" * 32) == b"s" * 32
    finally:
        reader.close()
        at_once.close()
