"""The Idempotency-Key store on SQLite and PostgreSQL: leases, takeovers, renewal,
retention and the sweep, driven by an injected clock (no sleeping)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from services.bootstrap import connect_pool
from services.idempotency import (
    Idempotency,
    IdempotencyError,
    Reservation,
    StoredAnswer,
    lease_kept,
    open_idempotency,
)
from tests.fake_clock import Clock

LEASE, RETENTION = 30.0, 3600.0
ANSWER = StoredAnswer(201, b'{"id":"x","version":1,"position":1}')
SECRET = bytes(32)  # the key store's search key, which keys fingerprints


class Keys:
    """An `Idempotency` on one database, its clock, and a count of its stored rows."""

    def __init__(self, keys: Idempotency, clock: Clock, rows: Callable[[], int]) -> None:
        self.keys, self.clock, self.rows = keys, clock, rows

    def begin(self, at: float, request: str = "A", owner: str = "ann") -> Reservation:
        self.clock.now = at
        held = self.keys.begin(owner, "k-1", request)
        assert isinstance(held, Reservation)
        return held

    def refused(self, at: float, request: str = "A", owner: str = "ann") -> str:
        self.clock.now = at
        with pytest.raises(IdempotencyError) as refusal:
            self.keys.begin(owner, "k-1", request)
        return refusal.value.reason

    def answered(self, at: float, request: str = "A") -> StoredAnswer | Reservation:
        self.clock.now = at
        return self.keys.begin("ann", "k-1", request)


LEGACY_DDL = (
    "CREATE TABLE crm_idempotency (owner text NOT NULL, key text NOT NULL,"
    " fingerprint text NOT NULL, status integer, body {blob},"
    " created_at {time} NOT NULL DEFAULT {now}, PRIMARY KEY (owner, key))"
)
LEGACY_ROWS = (
    "INSERT INTO crm_idempotency (owner, key, fingerprint, status, body) VALUES"
    " ('ann', 'stuck', 'A', NULL, NULL), ('ann', 'done', 'A', 201, {body})"
)


class Database:
    """One database holding the store: `open()` it (again, as a restarted process
    would), count its rows, or write the table the code before leases made."""

    def __init__(self, directory: Path, pool: ConnectionPool | None) -> None:
        self.directory, self.pool, self.clock = directory, pool, Clock(1_000_000.0)

    def open(self, lease: float = LEASE) -> Keys:
        keys = open_idempotency(
            self.pool,
            self.directory,
            secret=SECRET,
            lease_seconds=lease,
            retention_seconds=RETENTION,
        )
        keys.clock = self.clock
        return Keys(keys, self.clock, self.rows)

    def rows(self) -> int:
        return int(self.execute("SELECT count(*) FROM crm_idempotency"))

    def legacy(self) -> None:
        if self.pool is None:
            self.execute(LEGACY_DDL.format(blob="blob", time="text", now="CURRENT_TIMESTAMP"))
            self.execute(LEGACY_ROWS.format(body="X'7B7D'"))
        else:
            self.execute(LEGACY_DDL.format(blob="bytea", time="timestamptz", now="now()"))
            self.execute(LEGACY_ROWS.format(body="'\\x7b7d'::bytea"))

    def execute(self, statement: str) -> float:
        """A statement's one number, or 0."""
        if self.pool is None:
            with sqlite3.connect(self.directory / "idempotency.db") as conn:
                row = conn.execute(statement).fetchone()
        else:
            with self.pool.connection() as pg:
                cursor = pg.execute(statement.encode())
                row = cursor.fetchone() if cursor.description else None
        return 0 if row is None else float(row[0])


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        yield Database(tmp_path, None)
        return
    pool = connect_pool(request.getfixturevalue("pg_url"))
    yield Database(tmp_path, pool)
    pool.close()


@pytest.fixture
def store(database: Database) -> Keys:
    return database.open()


T = 1_000_000.0


def test_a_key_whose_holder_died_is_taken_over_once_its_lease_ran_out(store: Keys) -> None:
    dead = store.begin(T)
    assert not dead.recovering
    assert store.refused(T + LEASE - 1) == "idempotency-key-in-use"
    retry = store.begin(T + LEASE + 1)
    assert retry.recovering
    assert (retry.reservation, retry.reserved_at) == (dead.reservation, dead.reserved_at)
    assert store.refused(T + LEASE + 2) == "idempotency-key-in-use"  # the retry's own lease


def test_an_attempt_that_lost_its_key_can_neither_complete_nor_release_it(store: Keys) -> None:
    slow = store.begin(T)
    retry = store.begin(T + LEASE + 1)
    store.keys.complete(slow, ANSWER)
    store.keys.release(slow)
    assert not store.keys.renew(slow)
    assert store.refused(T + LEASE + 2) == "idempotency-key-in-use"
    store.keys.complete(retry, ANSWER)
    assert store.answered(T + LEASE + 3) == ANSWER


def test_a_renewed_lease_keeps_a_live_holders_key(store: Keys) -> None:
    live = store.begin(T)
    store.clock.now = T + LEASE - 5
    assert store.keys.renew(live)
    assert store.refused(T + LEASE + 5) == "idempotency-key-in-use"
    assert store.begin(T + 2 * LEASE).recovering


def test_a_completed_key_answers_its_stored_answer_and_no_takeover(store: Keys) -> None:
    store.keys.complete(store.begin(T), ANSWER)
    assert store.answered(T + 1) == ANSWER
    assert store.answered(T + LEASE * 10) == ANSWER


def test_a_different_request_is_refused_before_and_after_the_lease(store: Keys) -> None:
    store.begin(T, request="A")
    assert store.refused(T + 1, request="B") == "idempotency-key-reused"
    assert store.refused(T + LEASE + 1, request="B") == "idempotency-key-reused"
    assert store.begin(T + LEASE + 2, request="A").recovering


def test_keys_are_per_principal(store: Keys) -> None:
    store.begin(T, owner="ann")
    assert not store.begin(T, owner="bob").recovering


def test_a_released_key_is_free_again(store: Keys) -> None:
    store.keys.release(store.begin(T, request="A"))
    again = store.begin(T + 1, request="B")
    assert not again.recovering


def test_a_key_is_forgotten_after_the_retention_and_may_serve_a_new_request(store: Keys) -> None:
    first = store.begin(T, request="A")
    store.keys.complete(first, ANSWER)
    assert store.answered(T + RETENTION - 1) == ANSWER
    reused = store.begin(T + RETENTION + 1, request="B")
    assert not reused.recovering
    assert reused.reservation != first.reservation  # a creation under it gets a new id


def test_the_sweep_deletes_forgotten_keys_only(store: Keys) -> None:
    for index, at in enumerate((T, T + 10, T + 2000)):
        store.clock.now = at
        store.keys.begin("ann", f"k-{index}", "A")
    assert store.rows() == 3
    store.clock.now = T + RETENTION + 20
    assert store.keys.sweep() == 2
    assert store.rows() == 1


def test_using_a_key_sweeps_forgotten_ones_now_and_then(store: Keys) -> None:
    store.begin(T)
    store.clock.now = T + 1
    store.keys.begin("ann", "other", "A")
    assert store.rows() == 2
    store.clock.now = T + RETENTION + 5
    store.keys.begin("ann", "third", "A")
    assert store.rows() == 1


def test_a_restart_keeps_keys_and_their_leases(database: Database) -> None:
    dead = database.open().begin(T)
    restarted = database.open()
    assert restarted.refused(T + 1) == "idempotency-key-in-use"
    assert restarted.begin(T + LEASE + 1).reservation == dead.reservation


def test_a_table_from_before_leases_is_upgraded_and_its_stuck_keys_freed(
    database: Database,
) -> None:
    database.legacy()
    upgraded = database.open()
    sent = "SELECT count(*) FROM crm_idempotency WHERE key IN ('done', 'stuck')"
    assert (database.execute(sent), database.rows()) == (0, 2)  # known by their digests
    upgraded.clock.now = time.time()  # the legacy rows are as old as the database says
    assert upgraded.keys.begin("ann", "done", "A") == StoredAnswer(201, b"{}")
    assert isinstance(upgraded.keys.begin("ann", "stuck", "A"), Reservation)
    upgraded.clock.now = time.time() + RETENTION + 60
    assert upgraded.keys.sweep() == 2


EMAIL_KEY = "signup-grace.hopper@example.com"


def test_the_table_knows_a_key_by_its_digest_never_as_sent(database: Database) -> None:
    """A client may name a request after its person; the row is kept a day, and no
    erasure reaches it. It holds the key's digest, as the command's events do."""
    store = database.open()
    held = store.keys.begin("ann", EMAIL_KEY, "A")
    assert isinstance(held, Reservation)
    store.keys.complete(held, ANSWER)
    digest = store.keys.event_key("ann", EMAIL_KEY)
    assert database.execute(f"SELECT count(*) FROM crm_idempotency WHERE key = '{digest}'") == 1
    assert database.execute("SELECT count(*) FROM crm_idempotency WHERE key LIKE '%grace%'") == 0
    assert database.open().keys.begin("ann", EMAIL_KEY, "A") == ANSWER  # found again


def test_a_key_stored_as_sent_gives_way_to_the_same_key_held_under_its_digest(
    database: Database,
) -> None:
    """A process of the release before digests stored `k-1` as sent while one of this
    release held it under its digest: opening keeps the held row and drops the other."""
    store = database.open()
    held = store.begin(T)
    database.execute(
        "INSERT INTO crm_idempotency (owner, key, fingerprint, status, body, reserved_at)"
        f" VALUES ('ann', 'k-1', 'A', 201, {'X' if database.pool is None else ''}'7b7d', {T})"
    )
    assert database.rows() == 2
    reopened = database.open()
    assert database.rows() == 1
    assert reopened.refused(T + 1) == "idempotency-key-in-use"  # still held
    assert reopened.begin(T + LEASE + 1).reservation == held.reservation


def test_a_holder_renews_its_lease_while_its_command_runs(database: Database) -> None:
    store = database.open(lease=0.03)  # renewed every 10 ms of real time
    held = store.begin(T)

    async def command_taking_longer_than_its_lease() -> None:
        async with lease_kept(store.keys, held):
            store.clock.now = T + 100  # far beyond the first lease
            while database.execute("SELECT max(lease_until) FROM crm_idempotency") < T + 100:
                await asyncio.sleep(0.01)  # until the renewal ran

    asyncio.run(asyncio.wait_for(command_taking_longer_than_its_lease(), timeout=10))
    assert store.refused(T + 100.01) == "idempotency-key-in-use"
    assert store.begin(T + 101).recovering  # no renewal once the block is left
