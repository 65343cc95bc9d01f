"""The relay through a lock held on its position row, with a hand-written store and
broker (red team: a `LOCK TABLE crm_relay_position` held it, and its SIGTERM, for as
long as it was held). Each try waits a bounded time (`LockWaitTimedOut`); the relay
keeps running, says why in its health row, sends nothing past the page it could not
store, stops promptly, and carries on without a gap once the lock is let go. The real
lock: tests/integration/test_relay_lock_waits.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, cast

import pytest
from structlog.testing import capture_logs

from consumers import relay_trouble
from consumers.envelope import read_cloudevent
from consumers.kafka_io import Producer
from consumers.pg_lock_wait import Holder, LockWaitTimedOut
from consumers.relay import Relay
from consumers.relay_position import MemoryRelayPosition
from consumers.relay_trouble import Troubles
from tests.unit.consumers.published import Notification
from tests.unit.consumers.test_published_chain import FakeProducer, FakeRecorder, _stored

HOLDER = Holder(
    4242, "intruder", "psql", "idle in transaction", 12.0, ["public.crm_relay_position"]
)


class LockedPositions(MemoryRelayPosition):
    """A position row that another session holds locked while `locked` is set."""

    def __init__(self, position: int = 0) -> None:
        super().__init__(position)
        self.locked = threading.Event()
        self.tries = 0

    def _wait(self, what: str) -> None:
        if self.locked.is_set():
            self.tries += 1
            raise LockWaitTimedOut(what, ["crm_relay_position"], [HOLDER])

    def load(self) -> int:
        self._wait("stored position not read")
        return super().load()

    def save(self, position: int) -> None:
        self._wait(f"position {position} not stored")
        super().save(position)


class CountingProducer(FakeProducer):
    made: ClassVar[list[CountingProducer]] = []

    def __init__(self) -> None:
        super().__init__()
        CountingProducer.made.append(self)


def _sent_ids(producers: list[CountingProducer]) -> list[int]:
    """The positions the records carried, in the order they were sent."""
    return [read_cloudevent(value).position for p in producers for _, _, value in p.sent]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_trouble, "LOCK_RETRY_S", 0.02)
    CountingProducer.made = []


def _running(relay: Relay) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"idle_wait": 0.01})
    thread.start()
    return thread, stop


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"waited 10 s for {what}"
        time.sleep(0.005)


def test_a_locked_position_row_is_reported_retried_and_never_skipped() -> None:
    notifications = _stored(9)
    recorder = FakeRecorder(notifications[:3])
    positions = LockedPositions()
    reported: list[str | None] = []
    producer = cast(Callable[[], Producer], CountingProducer)
    relay = Relay(recorder, producer, positions, page_size=2, report=reported.append)
    thread, stop = _running(relay)
    try:
        _until(lambda: positions.position == 3, "the first events")
        positions.locked.set()
        recorder.notifications = notifications  # six more stored while the row is locked
        _until(lambda: positions.tries >= 5, "five tries")
        assert thread.is_alive()
        assert positions.position == 3
        sent_while_locked = len(_sent_ids(CountingProducer.made))
        _until(lambda: positions.tries >= 10, "five more tries")
        assert len(_sent_ids(CountingProducer.made)) == sent_while_locked  # nothing more
        assert reported == [
            "position 5 not stored: waiting for a lock on crm_relay_position (each wait ends"
            " after 0.5 s, then tries again): held by pid 4242 (intruder, application 'psql',"
            " idle in transaction; holds public.crm_relay_position)"
        ]  # once, while the same session holds on
        positions.locked.clear()
        _until(lambda: positions.position == 9, "the rest once the lock is let go")
        assert reported[-1] is None
    finally:
        stop.set()
        thread.join(timeout=10)
    sent = _sent_ids(CountingProducer.made)
    assert list(dict.fromkeys(sent)) == list(range(1, 10))  # every one, in order: no gap


def test_a_relay_stops_promptly_while_its_position_row_is_locked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notifications = _stored(6)
    recorder = FakeRecorder(notifications[:4])
    positions = LockedPositions()
    positions.locked.set()
    relay = Relay(recorder, cast(Callable[[], Producer], FakeProducer), positions)
    thread, stop = _running(relay)  # started with the row locked: not even read
    _until(lambda: positions.tries >= 3, "three tries")
    assert relay.position == 0
    positions.locked.clear()
    _until(lambda: positions.position == 4, "the start, then every event")
    positions.locked.set()
    recorder.notifications = notifications
    _until(lambda: positions.tries >= 5, "the next page's position refused")
    monkeypatch.setattr(relay_trouble, "LOCK_RETRY_S", 30.0)  # stop must not wait it out
    stopping = time.monotonic()
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - stopping < 1.0


def test_a_relay_deferred_by_a_locked_row_hands_the_signer_nothing_until_started() -> None:
    from consumers.relay_position import PublishedChain

    positions = LockedPositions(2)
    positions.locked.set()
    published = PublishedChain(lambda position: b"\x07" * 32)
    relay = Relay(
        FakeRecorder(_stored(3)), cast(Callable[[], Producer], FakeProducer), positions,
        published=published,
    )  # fmt: skip
    assert published.started_at is None
    assert published.head is None
    positions.locked.clear()
    assert relay.drain() == 1
    assert published.started_at == 2
    assert relay.position == 3


def test_troubles_join_each_sources_line_in_one_row() -> None:
    written: list[str | None] = []
    troubles = Troubles(written.append)
    relay, signer = troubles.of("relay"), troubles.of("signer")
    signer("audit signer failing")
    relay("position 5 not stored: waiting for a lock")
    signer(None)
    relay(None)
    assert written == [
        "audit signer failing",
        "position 5 not stored: waiting for a lock; audit signer failing",
        "position 5 not stored: waiting for a lock",
        None,
    ]


def test_a_relay_deferred_by_a_locked_row_logs_the_position_it_starts_from() -> None:
    """Fails before: 'relay started' said position 0 (logged before the deferred start)."""
    positions = LockedPositions(2)
    positions.locked.set()
    relay = Relay(FakeRecorder(_stored(3)), cast(Callable[[], Producer], FakeProducer), positions)
    with capture_logs() as lines:
        thread, stop = _running(relay)
        try:
            _until(lambda: positions.tries >= 3, "three tries")
            positions.locked.clear()
            _until(lambda: positions.position == 3, "the start, then the event after it")
        finally:
            stop.set()
            thread.join(timeout=10)
    started = [line for line in lines if line["event"] == "relay started"]
    assert [line["position"] for line in started] == [2]


class LockedLog(FakeRecorder):
    """An event log that another session holds locked while `locked` is set."""

    def __init__(self, notifications: list[Notification]) -> None:
        super().__init__(notifications)
        self.locked = threading.Event()
        self.tries = 0

    def select_notifications_within(self, start: int, limit: int, max_bytes: int) -> list[Any]:
        if self.locked.is_set():
            self.tries += 1
            raise LockWaitTimedOut(f"notifications after {start - 1} not read", ["crm_events"], [])
        return super().select_notifications_within(start, limit, max_bytes)


def test_a_locked_event_log_is_reported_retried_and_read_on_without_a_gap() -> None:
    notifications = _stored(6)
    recorder = LockedLog(notifications[:2])
    reported: list[str | None] = []
    producer = cast(Callable[[], Producer], CountingProducer)
    relay = Relay(recorder, producer, MemoryRelayPosition(), report=reported.append)
    thread, stop = _running(relay)
    try:
        _until(lambda: relay.position == 2, "the first events")
        recorder.locked.set()
        recorder.notifications = notifications
        _until(lambda: recorder.tries >= 5, "five tries")
        assert reported[-1] is not None
        assert reported[-1].startswith("notifications after 2 not read: waiting for a lock")
        recorder.locked.clear()
        _until(lambda: relay.position == 6, "the rest once the lock is let go")
        assert reported[-1] is None
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(reported) == 2  # once while locked, once when over
    assert list(dict.fromkeys(_sent_ids(CountingProducer.made))) == list(range(1, 7))
