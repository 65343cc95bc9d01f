"""The relay's chain over what it publishes, with a hand-written store and broker: the
head it hands the signer is `domain.hashchain`'s chain over the events as it read them,
at the position the broker acknowledged (`docs/audit.md`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast
from uuid import uuid4

import pytest

from consumers.kafka_io import Producer
from consumers.keyring import Keyring, MemoryKeyStore
from consumers.relay import Relay, RelayPoisoned
from consumers.relay_position import AnchorRefused, MemoryRelayPosition, PublishedChain, fold
from domain.customer import Customer
from domain.hashchain import GENESIS, canonical_event, chain_links
from tests.unit.consumers.published import MemoryStoredEvents, Notification
from tests.unit.domain.factories import ctx


class FakeRecorder:
    def __init__(self, notifications: Sequence[Notification]) -> None:
        self.notifications = list(notifications)

    def select_notifications_within(self, start: int, limit: int, max_bytes: int) -> list[Any]:
        return [n for n in self.notifications if n.id >= start][:limit]

    def max_notification_id(self) -> int:
        return max((n.id for n in self.notifications), default=0)


class FakeProducer:
    """Acknowledges everything; remembers what it was asked to confirm."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send_many(self, records: Sequence[tuple[str, bytes, bytes]], headers: Any) -> list[int]:
        self.sent.extend(records)
        return list(range(len(records)))

    def confirm(self, results: Any, timeout: float | None = None, *, flush: bool = True) -> None:
        pass

    def close(self, timeout: float = 5.0) -> None:
        pass


def _stored(count: int) -> list[Notification]:
    store, keyring = MemoryStoredEvents(), Keyring(MemoryKeyStore())
    customers = [
        Customer.register(ctx(), customer_id=uuid4(), name="N", owner_department="sales")
        for _ in range(count)
    ]
    return [store.store(c.collect_events()[0], keyring) for c in customers]


def _chain(notifications: Sequence[Notification], start: bytes = GENESIS) -> bytes:
    canonicals = [
        canonical_event(n.id, n.originator_id, n.originator_version, n.topic, n.state)
        for n in notifications
    ]
    return chain_links(start, canonicals)[-1]


def _relay(
    notifications: list[Notification], published: PublishedChain, position: int = 0, **kwargs: Any
) -> Relay:
    producer = cast(Callable[[], Producer], FakeProducer)  # a hand-written broker
    return Relay(
        FakeRecorder(notifications), producer, MemoryRelayPosition(position),
        published=published, **kwargs,
    )  # fmt: skip


def test_fold_is_the_chain_links_of_the_canonical_bytes() -> None:
    notifications = _stored(3)
    chain = GENESIS
    for notification in notifications:
        chain = fold(chain, notification)
    assert chain == _chain(notifications)


def test_a_relay_hands_on_its_chain_at_each_acknowledged_page() -> None:
    notifications = _stored(7)
    published = PublishedChain(lambda position: None)
    relay = _relay(notifications, published, page_size=3)
    assert published.head == (0, GENESIS)  # from the start of the log: nothing published
    assert relay.drain() == 7
    assert published.head == (7, _chain(notifications))


def test_a_relay_remembers_each_head_before_it_stores_the_position() -> None:
    """Review 3, F1: were the position stored first, a restart could begin past what is
    remembered beside the key, and take the span between from the store."""
    notifications = _stored(7)
    positions = MemoryRelayPosition(0)
    stored_when_remembered: list[tuple[int, int]] = []

    def remember(head: tuple[int, bytes]) -> str | None:
        stored_when_remembered.append((head[0], positions.position))
        return None

    published = PublishedChain(lambda position: None, remember)
    producer = cast(Callable[[], Producer], FakeProducer)
    relay = Relay(FakeRecorder(notifications), producer, positions, published=published,
                  page_size=3)  # fmt: skip
    assert relay.drain() == 7
    assert stored_when_remembered == [(3, 0), (6, 3), (7, 6)]
    assert positions.position == 7


def test_a_relay_started_later_folds_on_from_the_stores_link_at_its_position() -> None:
    notifications = _stored(5)
    anchored = b"\x07" * 32  # whatever the store holds there: the relay takes it
    published = PublishedChain(lambda position: anchored if position == 2 else None)
    relay = _relay(notifications, published, position=2)
    assert published.head == (2, anchored)
    relay.drain()
    assert published.head == (5, _chain(notifications[2:], start=anchored))


def test_a_refused_anchor_leaves_the_relay_no_head_for_the_whole_run() -> None:
    """Review F1: the store's link contradicts the remembered head; nothing the relay
    publishes afterwards gives it a head to sign with."""
    notifications = _stored(4)

    def anchor(position: int) -> bytes | None:
        raise AnchorRefused("not signing: edited before position 2")

    published = PublishedChain(anchor)
    relay = _relay(notifications, published, position=2)
    assert published.head is None
    assert relay.drain() == 2  # it still publishes
    assert published.head is None
    assert published.refused == "not signing: edited before position 2"
    published.published(4, b"\x01" * 32)
    assert published.head is None


def test_without_a_link_at_its_position_the_relay_publishes_but_hands_on_nothing() -> None:
    notifications = _stored(4)
    published = PublishedChain(lambda position: None)
    relay = _relay(notifications, published, position=2)
    assert relay.drain() == 2
    assert published.head is None
    assert published.started_at == 2


def test_a_poison_event_ends_the_chain_at_the_event_before_it() -> None:
    notifications = _stored(4)
    poison = notifications[2]._replace(topic="NoSuchEvent@1")
    notifications[2] = poison
    published = PublishedChain(lambda position: None)
    relay = _relay(notifications, published)
    with pytest.raises(RelayPoisoned):
        relay.drain()
    assert published.head == (2, _chain(notifications[:2]))
