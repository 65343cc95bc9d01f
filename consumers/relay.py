"""The relay: tails the event store's notification log and publishes it to Kafka, in order.

At-least-once, never a gap: a page of notifications is sent, the producer confirms every
record, and only then is the page's last notification id stored as the position. Any
send failure discards the in-flight page (the producer is closed) and the relay starts
again from the stored position, so per-partition order holds and re-sends are duplicates
(consumers deduplicate by `(aggregate id, version)`). Notification ids are in commit
order (the store's table lock), so reading `> position` never skips a late commit.

Outages are ridden out, never a reason to exit (`consumers.outage`): a broker outage
as above; a database outage (reading the log, storing the position, the LISTEN
connection) changes nothing in flight, the same step is simply tried again later.
A lock held on the position's table, or on the event log it reads
(`consumers.relay_reads`), is waited for a bounded time at each try
(`consumers.pg_lock_wait`): while it is held the acknowledged page stays pending and
nothing more is read or sent, the process says why in its health row
(`consumers.relay_trouble`), and a stop request ends it within a second or so; the
page is then read afresh from where the last one ended (no gap).

Given a `PublishedChain`, the relay also folds the hash chain over each event it sends,
as it read it (one SHA-256 an event), and hands the head at each acknowledged position
to the audit signer of its process: what the signer may sign up to (`docs/audit.md`).
It hands it on before it stores the position, so that what the chain remembers beside
the signer's key is never behind the position a restarted relay starts from. A stored
position found past that head was moved by hand (or the head could not be kept): the
relay starts from the head instead, publishes the events between again (duplicates,
which consumers skip) and says so (red team: a position row moved forward skipped them).

I/O: the recorder (PostgreSQL or SQLite), Kafka through `kafka_io`, the position store.
Dependencies arrive as arguments; this module never reads settings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import structlog

from consumers.byte_pages import PAGE_BYTES, cut_short
from consumers.envelope import AGGREGATE_TYPES, HEADERS, all_topics, to_record, topic_name
from consumers.kafka_io import Producer, SendResult, describe_topic_configs
from consumers.kafka_records import BrokerUnavailable
from consumers.outage import KAFKA, POSTGRES, Dependencies
from consumers.pg_lock_wait import LockWaitTimedOut
from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.relay_position import PositionStore, PublishedChain, fold
from consumers.relay_reads import bounded_log
from consumers.relay_trouble import LockWaits, Report
from consumers.relay_wakeup import PollWakeup, Wakeup
from domain import codec

log = structlog.get_logger("crm.relay")

STOP_CONFIRM_S = 5.0
"""How long a stopping relay waits for the broker to acknowledge what it sent."""
STOP_ERRORS: tuple[type[Exception], ...] = (
    BrokerUnavailable,
    LockWaitTimedOut,
    *DATABASE_UNAVAILABLE,
)


class RelayPoisoned(Exception):  # noqa: N818 - public name others import
    """A stored event cannot be published; the relay stops rather than skip it."""


class UnsafeTopics(Exception):  # noqa: N818 - public name others import
    """A topic's settings would let Kafka delete published events."""


def encode_notification(notification: Any, prefix: str) -> tuple[str, bytes, bytes]:
    """(topic, key, CloudEvent value) of a stored notification; `RelayPoisoned` if it
    cannot be decoded or published."""
    try:
        cls, version = codec.parse_topic(notification.topic)
        event = codec.decode(cls, notification.state, version)
        if event.aggregate_type not in AGGREGATE_TYPES:
            raise ValueError(f"unknown aggregate type {event.aggregate_type!r}")
        data = notification.state if version == cls.class_version else None
        key, value = to_record(event, notification.id, data)
    except (ValueError, TypeError, AttributeError, msgspec.MsgspecError) as error:
        raise RelayPoisoned(
            f"cannot publish notification {notification.id} (aggregate "
            f"{notification.originator_id} version {notification.originator_version}, "
            f"topic {notification.topic!r}): {error}"
        ) from error
    return topic_name(event.aggregate_type, prefix), key, value


def unsafe_settings(configs: dict[str, dict[str, str]]) -> list[str]:
    """Human-readable problems: settings under which Kafka would delete events."""
    problems = []
    for topic, config in sorted(configs.items()):
        for key in ("retention.ms", "retention.bytes"):
            if config.get(key) != "-1":
                problems.append(f"topic {topic}: {key}={config.get(key)} (must be -1)")
        if "compact" in config.get("cleanup.policy", ""):
            problems.append(f"topic {topic}: cleanup.policy={config['cleanup.policy']}")
    return problems


def verify_topics(bootstrap: str, prefix: str, *, allow_unsafe: bool = False) -> None:
    """Refuse (`UnsafeTopics`) to publish to topics that would lose history."""
    problems = unsafe_settings(describe_topic_configs(bootstrap, all_topics(prefix)))
    if problems and not allow_unsafe:
        raise UnsafeTopics(
            "refusing to publish: " + "; ".join(problems) + " (--allow-unsafe-topics overrides)"
        )
    for problem in problems:
        log.warning("unsafe topic setting allowed", problem=problem)


class Relay:
    """Publishes the notification log from the stored position, page by page."""

    def __init__(
        self,
        recorder: Any,
        producer_factory: Callable[[], Producer],
        positions: PositionStore,
        *,
        topic_prefix: str = "",
        wakeup: Wakeup | None = None,
        page_size: int = 2000,
        page_bytes: int = PAGE_BYTES,
        confirm_timeout: float = 30.0,
        dependencies: Dependencies | None = None,
        published: PublishedChain | None = None,
        report: Report | None = None,
    ) -> None:
        self._recorder = bounded_log(recorder)
        self._new_producer = producer_factory
        self._positions = positions
        self._prefix = topic_prefix
        self._wakeup = wakeup or PollWakeup()
        self._page_size = page_size
        self._page_bytes = page_bytes
        self._confirm_timeout = confirm_timeout
        self._producer: Producer | None = None
        self._published = published
        self._position = self._sent = 0
        self._chain: bytes | None = None
        """The chain at `_position` (None: not folded), and below, at `_sent`."""
        self._sent_chain: bytes | None = None
        self._pending: tuple[list[SendResult], int, bytes | None] | None = None
        self._unstored = False
        """Whether the pending page was acknowledged but its position not stored."""
        self._deps = dependencies or Dependencies("relay")
        self._locks = LockWaits(report)
        self.caught_up = False
        """Whether the last page read reached the end of the log (then `run` waits)."""
        self._started = False
        try:
            self._start()
        except LockWaitTimedOut as error:  # `run` starts it once the lock is let go
            self._locks.ran_out(error)

    @property
    def position(self) -> int:
        """The last notification id stored as acknowledged by the broker."""
        return self._position

    def _start(self) -> None:
        """From the stored position, or from the head remembered below it (`Rewound`)."""
        stored = self._positions.load()
        position, chain = (
            (stored, None) if self._published is None else self._published.start(stored)
        )
        if self._published is not None and (rewound := self._published.rewound) is not None:
            log.warning(
                "relay position past its published head",
                stored=stored, published=position, republishing=stored - position,
                why=rewound.why,
            )  # fmt: skip
        self._position = self._sent = position
        self._chain = self._sent_chain = chain
        self._started = True
        self._locks.over()

    def publish_page(self) -> int:
        """Send the next page; the number sent.

        Pipelined: page k is confirmed (and its position stored) after page k+1 has been
        handed to the producer, so Kafka is never idle while the log is read. A page is
        at most `page_size` events and stops at the one whose state brings it to
        `page_bytes` (read so by the database: the largest events are ~350 kB). A page
        short of both means the relay has caught up: it is confirmed at once, for
        latency. A poison event stops the relay, but only after everything before it is
        published and stored. A page acknowledged but not stored is stored first: until
        it is, nothing more is read.
        """
        if not self._started:
            self._start()
        if self._unstored:
            self._confirm_pending(flush=True)
        page: Sequence[Any] = self._recorder.select_notifications_within(
            self._sent + 1, self._page_size, self._page_bytes
        )
        self._deps.back(POSTGRES)
        self._locks.over()
        started = time.perf_counter()
        records: list[tuple[str, bytes, bytes]] = []
        chain = self._sent_chain
        try:
            for notification in page:
                records.append(encode_notification(notification, self._prefix))
                if chain is not None:
                    chain = fold(chain, notification)
        except RelayPoisoned:
            self._send(records, page[len(records) - 1].id if records else self._sent, chain)
            self._confirm_pending(flush=True)
            raise
        self._send(records, page[-1].id if page else self._sent, chain)
        self.caught_up = not cut_short(page, self._page_size, self._page_bytes)
        if self.caught_up:
            self._confirm_pending(flush=True)
        if page:
            log.info(
                "relay published",
                count=len(page),
                first=page[0].id,
                sent=self._sent,
                position=self._position,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return len(page)

    def _send(
        self, records: list[tuple[str, bytes, bytes]], last_id: int, chain: bytes | None
    ) -> None:
        """Hand `records` to the producer, then confirm the page sent before them;
        `chain` is the head after them."""
        if not records:
            return
        results = self._ensure_producer().send_many(records, HEADERS)
        self._confirm_pending()
        self._pending = (results, last_id, chain)
        self._sent, self._sent_chain = last_id, chain

    def _confirm_pending(self, *, flush: bool = False, timeout: float | None = None) -> None:
        """Wait for every acknowledgement of the pending page, then store its position.

        Without `flush` only that page is awaited: the page queued after it keeps the
        producer busy meanwhile. With it, lingering records go out at once (caught up).
        If storing fails, the page stays pending: confirmed again (at once), then stored.
        """
        if self._pending is None:
            return
        results, last_id, chain = self._pending
        assert self._producer is not None
        self._producer.confirm(results, timeout=timeout or self._confirm_timeout, flush=flush)
        self._deps.back(KAFKA)
        self._unstored = True
        if self._published is not None and chain is not None:
            self._published.published(last_id, chain)  # remembered before it is stored
        self._positions.save(last_id)
        self._deps.back(POSTGRES)
        self._locks.over()
        self._position, self._chain = last_id, chain
        self._pending, self._unstored = None, False

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._new_producer()
        return self._producer

    def drain(self) -> int:
        """Publish until the head seen at the start is reached; the number sent."""
        if not self._started:
            self._start()
        head = int(self._recorder.max_notification_id() or 0)
        total = 0
        while self._sent < head:
            sent = self.publish_page()
            if sent == 0:
                break
            total += sent
        self._confirm_pending(flush=True)
        return total

    def run(self, stop: threading.Event, idle_wait: float = 0.5) -> None:
        """Follow the log until `stop` is set; ride out broker and database outages."""
        said = False
        while not stop.is_set():
            try:
                said = said or self._say_started()
                self.publish_page()
                if self.caught_up:
                    self._wakeup.wait(idle_wait)
            except BrokerUnavailable as error:
                self._resend_from_stored_position()
                stop.wait(self._deps.lost(KAFKA, error))
            except LockWaitTimedOut as error:  # PostgreSQL answers: not an outage
                stop.wait(self._locks.ran_out(error))
            except DATABASE_UNAVAILABLE as error:
                self._wakeup.close()  # its connection is dead too: the next wait listens again
                stop.wait(self._deps.lost(POSTGRES, error))
        self._stop_gracefully()

    def _say_started(self) -> bool:
        """Log where the relay starts from, once it knows: a lock may defer its start."""
        if not self._started:
            self._start()
        log.info("relay started", position=self._position, prefix=self._prefix)
        return True

    def _stop_gracefully(self) -> None:
        """Confirm and store what was sent; if that fails, the next run re-sends it."""
        try:
            self._confirm_pending(flush=True, timeout=STOP_CONFIRM_S)
        except STOP_ERRORS as error:
            log.warning("relay stopped with events not confirmed or not stored", error=str(error))
        log.info("relay stopped", position=self._position)

    def _resend_from_stored_position(self) -> None:
        """Discard the in-flight page: resume from the stored position (duplicates, no gap)."""
        self.close_producer(timeout=0)
        self._pending, self._unstored = None, False
        self._sent, self._sent_chain = self._position, self._chain

    def close_producer(self, timeout: float = 5.0) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.close(timeout=timeout)

    def close(self) -> None:
        """Release the producer and the wake-up connection (the position is already stored)."""
        self.close_producer()
        self._wakeup.close()
