"""Embedded mode: the projections follow the event store directly, in process.

No Kafka: the follower pages through the notification log (`select_notifications_within`:
at most `batch_size` events, and `page_bytes` of stored states bar the last event's),
decodes each record as the application's mapper does but leaves it sealed (read models
store sealed values), derives the search terms of customer events (loading the page's
data keys in one query, `Keyring.preload`) and applies every projection through the
same `consumers.projecting.project` as the Kafka runner. Each projection
stores the next notification id under the pseudo-topic `STORE_TOPIC` in the same
transaction as its rows, so a restart resumes exactly. `applied_position(store)` is
what read-your-writes (`?min_position=N`) waits on.

An event that cannot be applied or written becomes a dead letter (`commit`), so it
never stops the read side. Anything else that fails a step (the disk is full, the
database is locked or gone) is retried with backoff until it succeeds: `run` never
ends on an error, and `trouble` says what keeps failing meanwhile (for `/readyz`).
Dead letters are retried from the event store itself (`retry_from_store`), as their
payload is the stored event. What it applies is what the store holds, so it needs none
of the Kafka consumers' check of each record against the store (`consumers.as_stored`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from consumers.batch_commit import Retried, commit, retry_letters
from consumers.blind_index import needs_terms, search_terms
from consumers.byte_pages import PAGE_BYTES
from consumers.keyring import Keyring
from consumers.projecting import Item, reason
from consumers.readmodel_store import (
    STORE_TOPIC,
    ReadModelStore,
    Status,
    StoredLetter,
    switch_or_drop,
)
from domain import codec
from domain.customer import CustomerErased
from projections.base import Projection

log = structlog.get_logger("crm.follower")
MAX_RETRY_DELAY = 5.0


class EventStoreFollower:
    """Applies new events of `app`'s notification log to `projections`; `run()`/`stop()`."""

    def __init__(
        self,
        app: Any,
        store: ReadModelStore,
        projections: Iterable[Projection],
        *,
        batch_size: int = 500,
        page_bytes: int = PAGE_BYTES,
        poll_interval: float = 0.05,
        on_applied: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_applied` is called after each page is committed (read-your-writes waiters
        are woken by it)."""
        self.app = app
        self.on_applied = on_applied
        self.store = store
        self.projections = list(projections)
        self.batch_size = batch_size
        self.page_bytes = page_bytes
        self.poll_interval = poll_interval
        self.stop_event = threading.Event()
        self.generations = {p.name: store.install(p) for p in self.projections}
        self.trouble: str | None = None
        """What made the last step fail (None once one succeeds): a stalled read side."""

    def run(self) -> None:
        """Follow until `stop()`; a failing step is retried with backoff, never fatal."""
        delay = self.poll_interval
        while not self.stop_event.is_set():
            try:
                read = self.step()
            except Exception as error:  # retried until it passes: the read side must go on
                self.trouble = f"{type(error).__name__}: {error}"
                log.warning("follower_retry", error=self.trouble, delay=delay, exc_info=True)
                self.stop_event.wait(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            self.trouble, delay = None, self.poll_interval
            if read == 0:
                self.stop_event.wait(self.poll_interval)

    def stop(self) -> None:
        self.stop_event.set()

    def step(self) -> int:
        """Apply one page of new events to every projection; how many events were read."""
        start = self.position() + 1
        notifications = self.app.recorder.select_notifications_within(
            start, self.batch_size, self.page_bytes
        )
        if not notifications:
            return 0
        items = self._items(notifications)
        lag = max(0, (self.app.recorder.max_notification_id() or 0) - notifications[-1].id)
        for projection in self.projections:
            commit(self.store, projection, self.generations[projection.name], items, lag)
        if any(isinstance(item.event, CustomerErased) for item in items):
            self.store.after_erasure()
        self.on_applied()
        return len(items)

    def position(self) -> int:
        """The notification id all this follower's projection versions have applied."""
        return min(
            _position(self.store.status(p.name, self.generations[p.name])) for p in self.projections
        )

    def _items(self, notifications: list[Any]) -> list[Item]:
        """Sealed events first, so the page's data keys load in one query; then the fields
        the projections open (none: they store sealed values) and the search terms."""
        sealed = [self._sealed(n) for n in notifications]
        cipher = getattr(self.app, "cipher", None)
        if not isinstance(cipher, Keyring):
            return sealed
        fields = frozenset().union(*(p.personal_inputs for p in self.projections))
        search = frozenset().union(*(p.search_fields for p in self.projections))
        cipher.preload(
            i.event.data_subject
            for i in sealed
            if i.event and (fields & set(i.event.personal_fields) or needs_terms(i.event, search))
        )
        return [self._prepared(item, cipher, fields, search) for item in sealed]

    def _sealed(self, n: Any) -> Item:
        """What `CodecMapper.to_domain_event` does, minus the unsealing."""
        try:
            cls, version = codec.parse_topic(n.topic)
            event = codec.decode(cls, n.state, version)
        except Exception as error:  # an unreadable stored event is a dead letter, by design
            origin = (n.originator_id, n.originator_version)
            return Item(STORE_TOPIC, 0, n.id, n.id, n.state, None, reason(error), origin=origin)
        return Item(STORE_TOPIC, 0, n.id, n.id, n.state, event)

    def _prepared(
        self, item: Item, keyring: Keyring, fields: frozenset[str], search: frozenset[str]
    ) -> Item:
        event = item.event
        if event is None:
            return item
        if isinstance(event, CustomerErased):
            keyring.forget(event.originator_id)
        try:
            opened = codec.unseal(event, keyring, [f for f in event.personal_fields if f in fields])
            return item._replace(event=opened, terms=search_terms(event, keyring, search))
        except Exception as error:  # a field that does not open is a dead letter, by design
            origin = (event.originator_id, event.originator_version)
            return item._replace(event=None, error=reason(error), origin=origin)


def retry_from_store(app: Any, store: ReadModelStore, projection: Projection) -> Retried:
    """Re-apply the embedded projection's dead letters, read again from the event store
    at their positions."""
    follower = EventStoreFollower(app, store, [projection])

    def items_of(letters: list[StoredLetter]) -> list[Item]:
        return follower._items([_notification(app, letter) for letter in letters])

    return retry_letters(store, projection, items_of)


def _notification(app: Any, letter: StoredLetter) -> Any:
    """The stored event a dead letter of the follower came from (its notification id)."""
    (notification,) = app.recorder.select_notifications(letter.offset, 1, stop=letter.offset)
    return notification


def applied_position(store: ReadModelStore, names: Iterable[str] | None = None) -> int:
    """The notification id every named projection (default: all) has applied up to."""
    from projections import PROJECTIONS

    return min((_position(store.status(name)) for name in names or PROJECTIONS), default=0)


def _position(status: Status) -> int:
    return status.positions.get((STORE_TOPIC, 0), 1) - 1


def rebuild_from_store(app: Any, store: ReadModelStore, projection: Projection) -> int:
    """Embedded rebuild: a new version from position 0 of the event store, then switch."""
    store.install(projection)
    generation = store.create_generation(projection)
    follower = EventStoreFollower(app, store, [projection], batch_size=2000)
    follower.generations = {projection.name: generation}
    while follower.step():
        pass
    switch_or_drop(store, projection, generation)
    return generation
