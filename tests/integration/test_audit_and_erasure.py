"""Auditors' reads and crypto-shredding, on SQLite and PostgreSQL event stores.

History lists every event with its metadata; `as_of` resolves an instant to the last
version that had occurred by then. Erasure destroys the customer's key: the stored log
is untouched and still replays, but every personal field in it reads as `[erased]`,
and nothing personal is stored in clear text in the first place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.postgres import PostgresAggregateRecorder

from consumers.key_stores import PostgresKeyStore, SqliteKeyStore
from consumers.keyring import Keyring, new_data_key
from domain.base import ERASED, NotFound
from domain.conversation import Conversation
from domain.customer import Customer
from services.api.loop_reads import event_source
from services.bootstrap import connect_pool
from services.erasure_watch import ErasureWatch
from services.event_store import CrmApplication, open_event_store
from services.pg_reads import PostgresReads
from tests.unit.domain.factories import T0, ctx


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CrmApplication]:
    if request.param == "sqlite":
        keyring = Keyring(SqliteKeyStore(tmp_path / "keys.db"))
        app = open_event_store(None, tmp_path, keyring)
        yield app
    else:
        url = request.getfixturevalue("pg_url")
        pool = connect_pool(url)
        app = open_event_store(url, None, Keyring(PostgresKeyStore(pool)))
        yield app
        pool.close()
    app.close()


def _customer_with_history(store: CrmApplication) -> Customer:
    customer = Customer.register(
        ctx(minutes=0),
        customer_id=uuid4(),
        name="Grace Hopper",
        email="grace@example.com",
        phone="+1 202 555 0143",
        owner_department="sales",
    )
    store.record(customer)
    customer.update_profile(ctx(minutes=10), company="Navy")
    store.record(customer)
    customer.share_with(ctx(minutes=20, actor="manager-1"), "support")
    store.record(customer)
    return customer


def test_history_lists_every_event_with_its_metadata(store: CrmApplication) -> None:
    customer = _customer_with_history(store)
    history = store.history(customer.id)
    assert [e.wire_name() for e in history] == [
        "CustomerRegistered",
        "CustomerProfileUpdated",
        "CustomerShared",
    ]
    assert [e.originator_version for e in history] == [1, 2, 3]
    assert history[2].actor == "manager-1"
    assert history[2].occurred_at == T0 + timedelta(minutes=20)


def test_state_as_of_an_instant(store: CrmApplication) -> None:
    customer = _customer_with_history(store)
    before_share = store.as_of(Customer, customer.id, T0 + timedelta(minutes=15))
    assert before_share.version == 2
    assert before_share.company == "Navy"
    assert not before_share.shared_with
    assert store.as_of(Customer, customer.id, T0 + timedelta(minutes=20)).version == 3
    with pytest.raises(NotFound):
        store.as_of(Customer, customer.id, T0 - timedelta(seconds=1))


def test_personal_data_is_never_stored_in_clear(store: CrmApplication) -> None:
    customer = _customer_with_history(store)
    stored = store.recorder.select_notifications(start=1, limit=10)
    payloads = b"".join(n.state for n in stored if n.originator_id == customer.id)
    assert b"Grace" not in payloads
    assert b"grace@example.com" not in payloads
    assert b"enc:v1:" in payloads


def test_erasure_shreds_history_but_the_log_still_replays(store: CrmApplication) -> None:
    customer = _customer_with_history(store)
    conversation = Conversation.open(
        ctx(minutes=30), conversation_id=uuid4(), customer=customer, channel="chat", subject="Hi"
    )
    conversation.log_message(
        ctx(minutes=31), message_id="m1", direction="inbound", author="Grace", content="call me"
    )
    store.record(conversation)
    customer.erase(ctx(minutes=40, actor="admin"), reason="GDPR art. 17")
    store.record(customer)
    assert isinstance(store.cipher, Keyring)
    store.cipher.erase(customer.id)

    reloaded = store.load(Customer, customer.id)
    assert reloaded.erased
    assert reloaded.name == ERASED
    assert store.history(customer.id)[0].name == ERASED  # type: ignore[attr-defined]
    past = store.as_of(Customer, customer.id, T0 + timedelta(minutes=5))
    assert past.email == ERASED
    message = store.load(Conversation, conversation.id).messages["m1"]
    assert message.content == ERASED
    assert reloaded.company == "Navy"  # not personal: kept for statistics


def test_erasure_holds_in_another_process(store: CrmApplication) -> None:
    customer = _customer_with_history(store)
    customer.erase(ctx(minutes=40, actor="admin"))
    store.record(customer)
    assert isinstance(store.cipher, Keyring)
    store.cipher.erase(customer.id)
    another_process = CrmApplication(store.env, Keyring(store.cipher.store))  # no cached keys
    history = another_process.history(customer.id)
    another_process.close()
    assert history[0].name == ERASED  # type: ignore[attr-defined]


def test_pg_key_table_holds_a_tombstone(pg_url: str) -> None:
    pool = connect_pool(pg_url)
    keyring = Keyring(PostgresKeyStore(pool))
    subject = uuid4()
    keyring.encrypt(subject, "secret")
    keyring.erase(subject)
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT key, erased_at FROM crm_subject_keys WHERE subject = %s", (subject,)
        ).fetchone()
    pool.close()
    assert row is not None
    assert row[0] is None
    assert row[1] is not None


def test_a_key_made_on_the_loop_is_never_a_second_one_nor_after_erasure(
    store: CrmApplication, request: pytest.FixtureRequest
) -> None:
    """`EventSource.create_key` (a registration's key, made on the API's event loop) keeps
    the key in force, and a tombstone for good, as `KeyStore.create` does."""
    assert isinstance(store.cipher, Keyring)
    keys, recorder = store.cipher.store, store.recorder
    new, erased = uuid4(), uuid4()
    keys.destroy(erased)

    async def scenario() -> tuple[bytes | None, ...]:
        postgres = isinstance(recorder, PostgresAggregateRecorder)
        source = event_source(store, keys, request.getfixturevalue("pg_url") if postgres else None)
        made = [await source.create_key(s, new_data_key()) for s in (new, new, erased)]
        if isinstance(source, PostgresReads):
            await source.aclose()
        return tuple(made)

    first, again, after_erasure = asyncio.run(scenario())
    assert first is not None
    assert again == first == keys.load(new)
    assert after_erasure is None
    assert keys.load(erased) is None


def test_many_keys_are_read_alike_by_the_store_and_on_the_loop(pg_url: str) -> None:
    """`KeyStore.load_many` and `PostgresReads.keys` (a page's keys, named by one array
    literal) give each subject its own key, None once destroyed, and nothing made up
    for a subject without one, however many are asked for at once."""
    pool = connect_pool(pg_url)
    keys = PostgresKeyStore(pool)
    made = {uuid4(): new_data_key() for _ in range(120)}
    for subject, key in made.items():
        keys.create(subject, key)
    kept, destroyed, never = list(made)[3:], list(made)[:3], [uuid4() for _ in range(5)]
    for subject in destroyed:
        keys.destroy(subject)
    asked = [*kept[:60], *never, *destroyed, *kept[60:]]  # a live key first and last

    async def on_the_loop() -> dict[UUID, bytes | None]:
        reads = PostgresReads(pg_url, "public", "stored_events", "stored_snapshots")
        try:
            return await reads.keys(asked)
        finally:
            await reads.aclose()

    by_store, on_loop = keys.load_many(asked), asyncio.run(on_the_loop())
    pool.close()
    expected = {s: None if s in destroyed else made.get(s) for s in asked}
    assert by_store == expected
    assert {s: on_loop.get(s) for s in asked} == expected
    assert set(on_loop) <= set(made)  # a subject never given a key has no row


def test_an_erasure_by_another_process_reaches_a_watching_process(pg_url: str) -> None:
    """An API process's erasure watch (`services.erasure_watch`) finds a key another
    process destroyed at its next check, and the keyring stops using it; with its
    connections cut (PostgreSQL restarting, say), the watch goes on checking."""
    pool = connect_pool(pg_url)
    keyring, elsewhere = Keyring(PostgresKeyStore(pool)), Keyring(PostgresKeyStore(pool))
    subject, other = uuid4(), uuid4()
    sealed = keyring.encrypt(subject, "Ada")
    keyring.encrypt(other, "Bob")

    async def scenario() -> tuple[str, set[UUID], list[set[UUID]], bool, bool]:
        reads = PostgresReads(pg_url, "public", "stored_events", "stored_snapshots")
        told: list[set[UUID]] = []
        watch = ErasureWatch(reads, keyring, told.append, interval=0.05)
        try:
            await watch.check()
            elsewhere.erase(subject)
            held = keyring.decrypt(subject, sealed)  # not told yet
            found = await watch.check()
            before = keyring.checked_as_of
            pids = [c.conn.info.backend_pid for c in reads._connections._idle]
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))
            watch.start()
            for _ in range(200):  # up to ten seconds
                if keyring.checked_as_of != before:
                    break
                await asyncio.sleep(0.05)
            await watch.stop()
            now = {c.conn.info.backend_pid for c in reads._connections._idle}
            return held, found, told, keyring.checked_as_of != before, not now & set(pids)
        finally:
            await reads.aclose()

    held, found, told, checked_again, reconnected = asyncio.run(scenario())
    pool.close()
    assert held == "Ada"
    assert subject in found
    assert other not in found
    assert subject in set().union(*told)
    assert keyring.decrypt(subject, sealed) == ERASED
    assert keyring.known_erased(other) is False
    assert checked_again
    assert reconnected
