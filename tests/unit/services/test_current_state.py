"""Reads of current state on the event loop (`services.current_state`): a kept aggregate
costs one head query shared by concurrent reads; a moved head costs one query for the
newer events only, applied to a copy; nothing stale is ever served, erasure included;
missing data keys are fetched once, without blocking."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from consumers.keyring import PREFIX, Keyring, MemoryKeyStore
from domain.base import ERASED, Aggregate, Context, NotFound
from domain.codec import CodecMapper
from domain.conversation import Conversation
from domain.customer import Customer
from domain.snapshot import TAGS, snapshot
from domain.task import Task
from services import current_state
from services.current_state import CurrentState
from services.event_store import applied
from services.gathered_queries import Gathered
from tests.unit.domain.factories import exactly

CTX = Context(
    actor="sam", actor_department="sales", occurred_at=datetime.now(UTC), correlation_id="t"
)
READS = ("events", "from snapshot")
"""What the hand-written source records for a read of an aggregate's events."""


class Store:
    """A hand-written event source: stored events in memory, with call counts."""

    def __init__(self, keys: MemoryKeyStore) -> None:
        self.mapper = CodecMapper(Keyring(keys))
        self.keys_store = keys
        self.stored: list[StoredEvent] = []
        self.snapshots: list[StoredEvent] = []
        self.asked: list[tuple[str, object]] = []
        self.gate: asyncio.Event | None = None  # holds head queries while set up

    def save(self, aggregate: Aggregate) -> None:
        self.stored += [self.mapper.to_stored_event(e) for e in aggregate.collect_events()]

    async def head(self) -> int:
        self.asked.append(("head", None))
        seen = len(self.stored)  # what the query sees as it starts
        if self.gate is not None:
            await self.gate.wait()
        return seen

    async def events_after(
        self, aggregate_id: UUID, version: int, limit: int
    ) -> Sequence[StoredEvent]:
        self.asked.append(("events", version))
        return [
            s
            for s in self.stored
            if s.originator_id == aggregate_id and s.originator_version > version
        ][:limit]

    async def events_after_each(
        self, wanted: Sequence[tuple[UUID, int]], limit: int
    ) -> list[Sequence[StoredEvent]]:
        self.asked.append(("events of each", [version for _, version in wanted]))
        seen = list(self.stored)  # what the query sees as it starts
        if self.gate is not None:
            await self.gate.wait()
        return [
            [s for s in seen if s.originator_id == i and s.originator_version > version][:limit]
            for i, version in wanted
        ]

    async def from_snapshot(
        self, aggregate_id: UUID, limit: int
    ) -> tuple[StoredEvent | None, Sequence[StoredEvent]]:
        mine = [s for s in self.snapshots if s.originator_id == aggregate_id]
        newest = max(mine, key=lambda s: s.originator_version, default=None)
        after = 0 if newest is None else newest.originator_version
        self.asked.append(("from snapshot", after))
        stored = self.stored
        return newest, [
            s for s in stored if s.originator_id == aggregate_id and s.originator_version > after
        ][:limit]

    async def put_snapshot(self, snapshot: StoredEvent) -> None:
        self.asked.append(("put snapshot", snapshot.originator_version))
        self.snapshots.append(snapshot)

    async def keys(self, subjects: Sequence[UUID]) -> dict[UUID, bytes | None]:
        self.asked.append(("keys", len(subjects)))
        found = self.keys_store.load_many(subjects)
        return {s: k for s, k in found.items() if k is not None or self.keys_store.destroyed(s)}

    async def key_rows(self, subjects: Sequence[UUID]) -> list[tuple[UUID, bytes | None]]:
        return list((await self.keys(subjects)).items())

    async def create_key(self, subject: UUID, key: bytes) -> bytes | None:
        self.asked.append(("create key", None))
        return self.keys_store.create(subject, key)


@pytest.fixture
def store() -> Store:
    return Store(MemoryKeyStore())


def reads(store: Store) -> CurrentState:
    """A reading process of its own: a keyring that holds no key yet."""
    return CurrentState(store, Keyring(store.keys_store))


def customer(store: Store) -> Customer:
    registered = Customer.register(
        CTX, customer_id=uuid4(), name="Ada", email="ada@example.com", owner_department="sales"
    )
    store.save(registered)
    return registered


def test_a_kept_customer_costs_a_head_query_until_the_head_moves(store: Store) -> None:
    ada = customer(store)
    current = reads(store)

    async def scenario() -> list[tuple[str, str | None, int]]:
        seen = []  # what each read answered, taken before the next (readers share the object)
        for change in (False, False, True):
            if change:
                ada.update_profile(CTX, company="Acme")
                store.save(ada)
            read = await current.load(Customer, ada.id)
            shown = await current.opened(read, Customer.personal_fields)
            seen.append((shown.name, read.company, read.version))
        return seen

    assert asyncio.run(scenario()) == [("Ada", None, 1), ("Ada", None, 1), ("Ada", "Acme", 2)]
    assert store.asked == [
        ("head", None), ("from snapshot", 0), ("keys", 1),  # first read, key fetched once
        ("head", None),  # unchanged head: the kept customer
        ("head", None), ("events", 1),  # moved head: only the newer event
    ]  # fmt: skip


def test_kept_customers_hold_at_most_max_bytes_the_least_recently_read_going_first(
    store: Store,
) -> None:
    ada, bob, cyd, dan = (customer(store) for _ in range(4))
    for n in range(2):
        cyd.record_order(CTX, order_id=f"o-{n}", amount="1.00", currency="EUR")
    for n in range(5):
        dan.record_order(CTX, order_id=f"o-{n}", amount="1.00", currency="EUR")
    store.save(cyd)
    store.save(dan)
    bound = ada.held_bytes() * 3
    assert bob.held_bytes() + cyd.held_bytes() <= bound < ada.held_bytes() * 2 + cyd.held_bytes()
    assert dan.held_bytes() > bound
    current = CurrentState(store, Keyring(store.keys_store), max_bytes=bound)

    async def read(*who: Customer) -> list[object]:
        del store.asked[:]
        for one in who:
            await current.load(Customer, one.id)
        return [version for asked, version in store.asked if asked in READS]

    assert asyncio.run(read(ada, bob)) == [0, 0]
    assert asyncio.run(read(ada, bob)) == []  # both kept
    assert asyncio.run(read(cyd)) == [0]  # kept: ada, the least recently read, went
    assert asyncio.run(read(bob, cyd, ada)) == [0]
    assert asyncio.run(read(dan, dan)) == [0, 0]  # more than the whole bound: never kept


def test_a_kept_customer_holds_its_personal_fields_sealed_and_a_read_opens_a_copy(
    store: Store,
) -> None:
    ada = customer(store)
    current = reads(store)

    async def scenario() -> tuple[Customer, Customer]:
        kept = await current.load(Customer, ada.id)
        return kept, await current.opened(kept, ["name"])

    kept, shown = asyncio.run(scenario())

    assert kept.name.startswith(PREFIX)
    assert kept.email is not None
    assert kept.email.startswith(PREFIX)  # as stored: no plaintext outlives a read
    assert (shown.name, shown.email) == ("Ada", kept.email)  # only what the read may show
    assert kept.name.startswith(PREFIX)  # opening made a copy
    assert asyncio.run(current.load(Customer, ada.id)) is kept


def test_a_kept_customer_erased_elsewhere_opens_as_erased_before_its_event_arrives(
    store: Store,
) -> None:
    ada = customer(store)
    keyring = Keyring(store.keys_store)
    current = CurrentState(store, keyring)

    async def scenario() -> list[str]:
        kept = await current.load(Customer, ada.id)
        before = (await current.opened(kept, ["name"])).name
        store.keys_store.destroy(ada.id)  # another process erased Ada: the key is gone
        keyring.checked(keyring.now(), datetime.now(UTC), [ada.id])  # its erasure watch
        return [before, (await current.opened(kept, ["name", "email"])).name]

    assert asyncio.run(scenario()) == ["Ada", ERASED]


def test_concurrent_reads_share_a_head_query_that_began_after_they_asked(store: Store) -> None:
    ada = customer(store)
    current = reads(store)

    async def scenario() -> list[Customer]:
        await current.load(Customer, ada.id)
        store.gate = asyncio.Event()
        early = [asyncio.create_task(current.load(Customer, ada.id)) for _ in range(5)]
        await asyncio.sleep(0)  # their head query has started
        ada.update_profile(CTX, company="Acme")
        store.save(ada)  # committed while that query runs
        late = [asyncio.create_task(current.load(Customer, ada.id)) for _ in range(5)]
        await asyncio.sleep(0)
        store.gate.set()
        return list(await asyncio.gather(*early, *late))

    seen = asyncio.run(scenario())

    heads = [kind for kind, _ in store.asked].count("head")
    assert heads == 3  # the first read, then one query for the early five, one for the late
    assert all(c.company == "Acme" for c in seen[5:])  # asked after the commit: they see it


def test_erasure_reaches_a_kept_customer(store: Store) -> None:
    ada = customer(store)
    current = reads(store)

    async def scenario() -> Customer:
        await current.load(Customer, ada.id)
        ada.erase(CTX, reason="request")
        store.save(ada)
        return await current.load(Customer, ada.id)

    erased = asyncio.run(scenario())

    assert erased.erased
    assert erased.name == ERASED
    assert erased.email == ERASED


def test_conversations_are_kept_sealed_and_open_as_erased_once_their_key_is_gone(
    store: Store,
) -> None:
    ada = customer(store)
    opened = Conversation.open(
        CTX, conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
    )
    store.save(opened)
    keyring = Keyring(store.keys_store)
    current = CurrentState(store, keyring)

    async def scenario() -> tuple[Conversation, list[str]]:
        first = await current.load(Conversation, opened.id)
        again = await current.load(Conversation, opened.id)
        assert again is first  # kept
        subjects = [(await current.opener(ada.id))(again.subject)]
        store.keys_store.destroy(ada.id)  # another process erased Ada: the key is gone
        keyring.checked(keyring.now(), datetime.now(UTC), [ada.id])  # its erasure watch
        kept = await current.load(Conversation, opened.id)
        subjects.append((await current.opener(ada.id))(kept.subject))
        return kept, subjects

    kept, subjects = asyncio.run(scenario())

    assert kept.subject.startswith(PREFIX)  # sealed, as stored
    assert subjects == ["Invoice", ERASED]
    assert [v for kind, v in store.asked if kind in READS] == [0]  # read once


def test_a_kept_aggregate_is_never_changed_a_newer_state_is_a_copy(store: Store) -> None:
    """A reader may hold what `load` gave across awaits, or on a worker thread."""
    ada = customer(store)
    talk = Conversation.open(
        CTX, conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
    )
    store.save(talk)
    current = reads(store)

    async def scenario() -> tuple[Conversation, Conversation, Conversation]:
        held = await current.load(Conversation, talk.id)
        talk.log_message(CTX, message_id="m", direction="inbound", author="Ada", content="hi")
        store.save(talk)
        newer = await current.load(Conversation, talk.id)
        mine = await current.rebuilt(Conversation, talk.id)  # a command's own copy
        mine.log_message(CTX, message_id="n", direction="inbound", author="Ada", content="hi")
        return held, newer, await current.load(Conversation, talk.id)

    held, newer, last = asyncio.run(scenario())

    assert (held.version, list(held.messages)) == (1, [])
    assert (newer.version, list(newer.messages)) == (2, ["m"])
    assert last is newer  # the command's change is its own until it is stored


def test_histories_are_read_a_page_at_a_time(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(current_state, "READ_PAGE", 2)
    ada = customer(store)
    for n in range(4):  # versions 2-5
        ada.update_profile(CTX, company=f"Company {n}")
    store.save(ada)
    talk = Conversation.open(
        CTX, conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
    )
    for n in range(3):  # versions 2-4
        talk.log_message(CTX, message_id=f"m{n}", direction="inbound", author="Ada", content="hi")
    store.save(talk)
    current = reads(store)

    async def scenario() -> tuple[Customer, Customer, Conversation, int]:
        kept = await current.load(Customer, ada.id)
        first = kept.version
        for n in range(3):  # versions 6-8, caught up from the kept one
            ada.update_profile(CTX, company=f"Later {n}")
        store.save(ada)
        caught_up = await current.load(Customer, ada.id)
        return kept, caught_up, await current.load(Conversation, talk.id), first

    kept, caught_up, read, first = asyncio.run(scenario())

    assert first == 5
    assert (kept.version, kept.company) == (5, "Company 3")  # as it was kept: unchanged
    assert (caught_up.version, caught_up.company) == (8, "Later 2")  # a copy, caught up
    assert (read.version, list(read.messages)) == (4, ["m0", "m1", "m2"])
    events = [v for kind, v in store.asked if kind in READS]
    assert events == [0, 2, 4, 5, 7, 0, 2, 4]  # pages of 2: 1-2 3-4 5, 6-7 8, 1-2 3-4 (none)


def _long(store: Store, events: int) -> Customer:
    """A customer with `events` events stored."""
    ada = customer(store)
    for n in range(2, events + 1):
        ada.update_profile(CTX, company=f"Company {n}")
    store.save(ada)
    return ada


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Histories read 2 events at a time, and a snapshot stored every 4 versions."""
    monkeypatch.setattr(current_state, "READ_PAGE", 2)
    monkeypatch.setattr(current_state, "SNAPSHOT_EVERY", 4)


@pytest.mark.usefixtures("small_pages")
def test_a_long_history_read_cold_starts_from_its_snapshot(store: Store) -> None:
    ada = _long(store, 9)

    first = asyncio.run(reads(store).load(Customer, ada.id))  # no snapshot yet: it stores one
    asked_first, store.asked = store.asked, []
    again = asyncio.run(reads(store).load(Customer, ada.id))  # another process, cold
    asked_again, store.asked = store.asked, []
    for n in range(3):  # versions 10-12
        ada.update_profile(CTX, company=f"Later {n}")
    store.save(ada)
    later = asyncio.run(reads(store).load(Customer, ada.id))

    assert [v for kind, v in asked_first if "snapshot" in kind] == [0, 9]  # none; put 9
    assert [(k, v) for k, v in asked_again if k != "head"] == [
        ("from snapshot", 9),  # one question: the snapshot at 9 and nothing after it
    ]
    assert again.state() == first.state()
    assert again is not first
    assert [(k, v) for k, v in store.asked if k != "head"] == [
        ("from snapshot", 9), ("events", 11),
    ]  # fmt: skip  # 10-11 with the snapshot, then 12; 12 - 9 < 4: no new one
    assert (later.version, later.company) == (12, "Later 2")
    assert later == _rebuilt_whole(store, ada.id)


def _rebuilt_whole(store: Store, customer_id: UUID) -> Customer:
    """The customer from every event of it stored, sealed, as a rebuild applies them."""
    rebuilt = applied(None, [s for s in store.stored if s.originator_id == customer_id])
    assert isinstance(rebuilt, Customer)
    return rebuilt


@pytest.mark.usefixtures("small_pages")
def test_a_snapshot_in_another_shape_or_unreadable_is_passed_over(store: Store) -> None:
    ada, cat = _long(store, 5), _long(store, 5)
    store.snapshots = [
        StoredEvent(ada.id, 5, "customer.v0.0000000000000000", b"{}"),  # an older shape
        StoredEvent(cat.id, 4, TAGS[Customer], b'{"id": "not a customer"}'),  # does not decode
    ]

    read = [asyncio.run(reads(store).load(Customer, c.id)) for c in (ada, cat)]

    assert read == [_rebuilt_whole(store, c.id) for c in (ada, cat)]
    assert [(k, v) for k, v in store.asked if k in READS] == [
        ("from snapshot", 5), ("events", 0), ("events", 2), ("events", 4),
        ("from snapshot", 4), ("events", 0), ("events", 2), ("events", 4),
    ]  # fmt: skip  # each read from its first event, a page of 2 at a time
    assert [(s.originator_id, s.originator_version, s.topic) for s in store.snapshots[2:]] == [
        (ada.id, 5, TAGS[Customer]), (cat.id, 5, TAGS[Customer]),
    ]  # fmt: skip  # 5 events read since none usable: each stores one in this shape


@pytest.mark.usefixtures("small_pages")
def test_a_snapshot_is_where_a_cold_read_starts_whatever_its_version(store: Store) -> None:
    ada = _long(store, 3)
    kept = _rebuilt_whole(store, ada.id)
    store.snapshots = [StoredEvent(ada.id, 3, TAGS[Customer], snapshot(kept))]
    for n in range(2):  # versions 4-5
        ada.update_profile(CTX, company=f"Later {n}")
    store.save(ada)

    read = asyncio.run(reads(store).load(Customer, ada.id))

    assert read == _rebuilt_whole(store, ada.id)
    assert [(k, v) for k, v in store.asked if k in READS] == [
        ("from snapshot", 3), ("events", 5),  # 4-5 with the snapshot, then none after 5
    ]  # fmt: skip


@pytest.mark.usefixtures("small_pages")
def test_a_long_conversation_is_read_and_rebuilt_from_its_snapshot(store: Store) -> None:
    talk = Conversation.open(
        CTX, conversation_id=uuid4(), customer=customer(store), channel="email", subject="Hi"
    )
    for n in range(8):  # versions 2-9
        talk.log_message(CTX, message_id=f"m{n}", direction="inbound", author="Ada", content="hi")
    store.save(talk)
    assert talk.customer_id is not None
    ada = _rebuilt_whole(store, talk.customer_id)
    other_kind = StoredEvent(talk.id, 8, TAGS[Customer], snapshot(ada))  # not a conversation's
    store.snapshots = [other_kind]

    first = asyncio.run(reads(store).load(Conversation, talk.id))  # from nothing: stores 9
    store.asked.clear()
    mine = asyncio.run(reads(store).rebuilt(Conversation, talk.id))  # a command's, from 9
    asked, store.asked = store.asked, []
    mine.log_message(CTX, message_id="m9", direction="inbound", author="Ada", content="hi")
    again = asyncio.run(reads(store).load(Conversation, talk.id))

    assert [s.originator_version for s in store.snapshots[1:]] == [9]
    assert asked == [("head", None), ("from snapshot", 9)]  # nothing after it
    assert exactly(mine) != exactly(first)  # the command's own, changed by it
    assert exactly(again) == exactly(first)
    assert list(again.messages) == [f"m{n}" for n in range(8)]


def test_a_kept_customer_far_past_its_snapshot_stores_a_new_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(current_state, "SNAPSHOT_EVERY", 4)
    ada = _long(store, 3)
    current = reads(store)

    async def scenario() -> list[int]:
        versions = []
        for _ in range(3):
            ada.update_profile(CTX, company=f"{ada.version + 1}")
            ada.update_profile(CTX, company=f"{ada.version + 1}")
            store.save(ada)
            versions.append((await current.load(Customer, ada.id)).version)
        return versions

    assert asyncio.run(scenario()) == [5, 7, 9]
    assert [s.originator_version for s in store.snapshots] == [5, 9]  # 4 or more past the last


def test_a_catch_up_further_behind_than_a_page_reads_the_rest_in_pages(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(current_state, "READ_PAGE", 2)
    ada = customer(store)
    current = reads(store)

    async def scenario() -> Customer:
        mine = await current.rebuilt(Customer, ada.id)
        for n in range(5):  # another process: versions 2-6
            ada.update_profile(CTX, company=f"Company {n}")
        store.save(ada)
        store.asked.clear()
        return await current.caught_up(mine)

    caught_up = asyncio.run(scenario())

    assert (caught_up.version, caught_up.company) == (6, "Company 4")
    assert store.asked == [("events of each", [1]), ("events", 3), ("events", 5)]


def test_a_command_s_aggregate_is_caught_up_with_only_the_newer_events(store: Store) -> None:
    ada = customer(store)
    current = reads(store)

    async def scenario() -> tuple[Customer, Customer]:
        mine = await current.rebuilt(Customer, ada.id)  # what a command caches
        ada.update_profile(CTX, email="ada@example.org")  # another process, twice
        ada.erase(CTX, reason="request")
        store.save(ada)
        return mine, await current.caught_up(mine)

    mine, caught_up = asyncio.run(scenario())

    assert caught_up is mine  # in place: the command owns it
    assert (caught_up.version, caught_up.erased, caught_up.email) == (3, True, ERASED)
    assert store.asked[:2] == [("head", None), ("from snapshot", 0)]  # none: the history
    assert store.asked[-1] == ("events of each", [1])  # caught up: only the newer events


def test_a_command_s_customer_is_a_sealed_copy_of_the_kept_one(store: Store) -> None:
    ada = customer(store)
    current = reads(store)

    async def scenario() -> tuple[Customer, Customer]:
        kept = await current.load(Customer, ada.id)  # a read keeps it
        store.asked.clear()
        mine = await current.rebuilt(Customer, ada.id)  # a command whose cache missed
        mine.update_profile(CTX, email="ada@example.org")
        return kept, mine

    kept, mine = asyncio.run(scenario())

    assert store.asked == [("head", None)]  # no history, no key: the kept one is current
    assert mine.name.startswith(PREFIX)  # nothing opened: the command opens what it compares
    assert (mine.email, mine.version) == ("ada@example.org", 2)
    assert str(kept.email).startswith(PREFIX)  # the kept one unchanged
    assert kept.version == 1


def test_a_command_s_customer_is_caught_up_sealed(store: Store) -> None:
    ada = customer(store)
    current = reads(store)

    async def scenario() -> Customer:
        mine = await current.rebuilt(Customer, ada.id)
        ada.update_profile(CTX, name="Ada King")  # another process
        store.save(ada)
        return await current.caught_up(mine)

    mine = asyncio.run(scenario())

    assert mine.version == 2
    assert mine.name.startswith(PREFIX)  # applied as stored: no key asked for
    assert ("keys", 1) not in store.asked


def test_a_command_s_task_and_conversation_are_built_sealed(store: Store) -> None:
    """Commands hold every aggregate sealed, opening only what a decision compares."""
    ada = customer(store)
    task = Task.create(CTX, task_id=uuid4(), customer=ada, title="Call back")
    talk = Conversation.open(
        CTX, conversation_id=uuid4(), customer=ada, channel="email", subject="Invoice"
    )
    store.save(task)
    store.save(talk)
    current = reads(store)

    async def scenario() -> tuple[Task, Conversation]:
        return await current.rebuilt(Task, task.id), await current.rebuilt(Conversation, talk.id)

    mine, conversation = asyncio.run(scenario())

    assert mine.title.startswith(PREFIX)
    assert conversation.subject.startswith(PREFIX)
    assert "keys" not in [kind for kind, _ in store.asked]  # nothing opened


def test_catch_ups_asked_while_one_runs_share_the_next_query(store: Store) -> None:
    ada, bob, cy = customer(store), customer(store), customer(store)
    current = reads(store)

    async def scenario() -> list[Customer]:
        mine = [await current.rebuilt(Customer, c.id) for c in (ada, bob, cy)]
        store.gate = asyncio.Event()
        first = asyncio.create_task(current.caught_up(mine[0]))
        await asyncio.sleep(0)  # its query has started
        bob.update_profile(CTX, company="Acme")  # another process, while it runs
        cy.update_profile(CTX, company="Initech")
        store.save(bob)
        store.save(cy)
        later = [asyncio.create_task(current.caught_up(m)) for m in mine[1:]]
        await asyncio.sleep(0)
        store.gate.set()
        return list(await asyncio.gather(first, *later))

    seen = asyncio.run(scenario())

    assert [kind for kind, _ in store.asked].count("events of each") == 2
    assert ("events of each", [1, 1]) in store.asked  # bob's and cy's, in one query
    assert [(c.company, c.version) for c in seen] == [(None, 1), ("Acme", 2), ("Initech", 2)]


def test_another_kind_or_no_events_is_not_found(store: Store) -> None:
    ada = customer(store)
    current = reads(store)

    with pytest.raises(NotFound):
        asyncio.run(current.load(Conversation, ada.id))
    with pytest.raises(NotFound):
        asyncio.run(current.load(Customer, uuid4()))


def test_a_failed_query_fails_the_questions_it_carried_and_the_next_query_runs() -> None:
    calls: list[list[int]] = []

    async def query(asked: list[int]) -> list[int]:
        calls.append(asked)
        if len(calls) == 1:
            raise ConnectionError("lost")
        return [n * 10 for n in asked]

    gathered: Gathered[int, int] = Gathered(query)

    async def scenario() -> list[int]:
        failed = await asyncio.gather(gathered.ask(1), gathered.ask(2), return_exceptions=True)
        assert all(isinstance(f, ConnectionError) for f in failed)
        return list(await asyncio.gather(gathered.ask(3), gathered.ask(4)))

    assert asyncio.run(scenario()) == [30, 40]  # each its own answer
    assert calls == [[1, 2], [3, 4]]


def test_hold_keys_makes_a_key_only_when_asked_and_never_for_an_erased_customer(
    store: Store,
) -> None:
    keyring = Keyring(store.keys_store)
    current = CurrentState(store, keyring)
    new, erased = uuid4(), uuid4()
    store.keys_store.destroy(erased)

    async def scenario() -> None:
        await current.hold_keys([new, erased])
        assert keyring.known_erased(new) is None  # no key made for a plain read
        await current.hold_keys([new, erased], create=True)

    asyncio.run(scenario())

    made = store.keys_store.load(new)
    assert made is not None
    assert keyring.known_erased(new) is False
    assert keyring.known_erased(erased) is True
    assert store.keys_store.load(erased) is None
    assert [kind for kind, _ in store.asked].count("create key") == 1  # not for the erased
