"""Embedded mode: the projections follow the event store directly, in process.

No Kafka: the follower pages through the notification log (`select_notifications`),
decodes each record as the application's mapper does, loads the page's data keys in
one query (`Keyring.preload`), unseals personal fields and applies every projection
through the same `consumers.projecting.project` as the Kafka runner. Each projection
stores the next notification id under the pseudo-topic `STORE_TOPIC` in the same
transaction as its rows, so a restart resumes exactly. `applied_position(store)` is
what read-your-writes (`?min_position=N`) waits on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from consumers.keyring import Keyring
from consumers.projecting import Item, project
from consumers.readmodel_store import STORE_TOPIC, ReadModelStore, Status
from domain import codec
from domain.customer import CustomerErased
from projections.base import Projection

log = structlog.get_logger("crm.follower")


class EventStoreFollower:
    """Applies new events of `app`'s notification log to `projections`; `run()`/`stop()`."""

    def __init__(
        self,
        app: Any,
        store: ReadModelStore,
        projections: Iterable[Projection],
        *,
        batch_size: int = 500,
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
        self.poll_interval = poll_interval
        self.stop_event = threading.Event()
        self.generations = {p.name: store.install(p) for p in self.projections}

    def run(self) -> None:
        while not self.stop_event.is_set():
            if self.step() == 0:
                self.stop_event.wait(self.poll_interval)

    def stop(self) -> None:
        self.stop_event.set()

    def step(self) -> int:
        """Apply one page of new events to every projection; how many events were read."""
        start = self.position() + 1
        notifications = self.app.recorder.select_notifications(start, self.batch_size)
        if not notifications:
            return 0
        items = self._items(notifications)
        lag = max(0, (self.app.recorder.max_notification_id() or 0) - notifications[-1].id)
        for projection in self.projections:
            generation = self.generations[projection.name]
            with self.store.session(projection, generation) as session:
                project(session, projection, items, lag)
        self.on_applied()
        return len(items)

    def position(self) -> int:
        """The notification id all this follower's projection versions have applied."""
        return min(
            _position(self.store.status(p.name, self.generations[p.name])) for p in self.projections
        )

    def _items(self, notifications: list[Any]) -> list[Item]:
        """Sealed events first, so the page's data keys load in one query, then opened."""
        sealed = [self._sealed(n) for n in notifications]
        cipher = getattr(self.app, "cipher", None)
        if isinstance(cipher, Keyring):
            cipher.preload(
                i.event.data_subject for i in sealed if i.event and i.event.personal_fields
            )
        return [self._unsealed(item, cipher) for item in sealed]

    def _sealed(self, n: Any) -> Item:
        """What `CodecMapper.to_domain_event` does, minus the unsealing."""
        try:
            cls, version = codec.parse_topic(n.topic)
            event = codec.decode(cls, n.state, version)
        except Exception as error:  # an unreadable stored event is a dead letter, by design
            return Item(STORE_TOPIC, 0, n.id, n.id, n.state, None, _reason(error))
        return Item(STORE_TOPIC, 0, n.id, n.id, n.state, event)

    def _unsealed(self, item: Item, cipher: Any) -> Item:
        if item.event is None or cipher is None:
            return item
        if isinstance(item.event, CustomerErased) and callable(getattr(cipher, "forget", None)):
            cipher.forget(item.event.originator_id)
        try:
            return item._replace(event=codec.unseal(item.event, cipher))
        except Exception as error:  # a field that does not open is a dead letter, by design
            return item._replace(event=None, error=_reason(error))


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


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
    store.switch(projection, generation)
    return generation


def follow_event_store(
    app: Any,
    store: ReadModelStore,
    projections: Iterable[Projection],
    stop: threading.Event,
    on_applied: Callable[[], None] = lambda: None,
) -> None:
    """Run a follower until `stop` is set (for a thread in `crm run`)."""
    follower = EventStoreFollower(app, store, projections, on_applied=on_applied)
    follower.stop_event = stop
    follower.run()
