"""How far the read models have got: what `?min_position=N` (read-your-writes) waits on.

Embedded, the follower stores the event-store position with the rows, so
`consumers.follower.applied_position(store, names)` answers directly.

With PostgreSQL + Kafka each projection runs in its own `crm consume` process and stores
Kafka offsets, which do not map to event-store positions; its highest event position
seen (`_status.last_position`) is no proof either, since partitions are consumed in any
interleaving. What each projection does store, in the same transaction as its rows, is
the last version applied per aggregate (`_applied`), and Kafka keeps each aggregate's
events in order. So "every event up to N is applied" holds exactly when no event up to
N has a version above its aggregate's applied version: one anti-join of the event store
with `_applied` (both in the same database). The verified position per projection only
moves forward, so each check scans only the events above it.
A genuine event a consumer could not decode is a dead letter whose version is taken
(`consumers.projecting`), as one whose apply failed: neither holds the watermark back.
I/O: PostgreSQL, through the read-model store's `fetch`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from consumers.readmodel_store import ReadModelStore

AppliedPosition = Callable[[Sequence[str]], int]
"""The position every event up to which the named projections have applied."""

_FIRST_MISSING = (
    "SELECT min(e.notification_id) AS missing FROM {e} e"
    " LEFT JOIN {a} a ON a.aggregate_id = e.originator_id"
    " WHERE e.notification_id > %(after)s AND e.notification_id <= %(upto)s"
    " AND (a.version IS NULL OR a.version < e.originator_version)"
)


class AppliedVersionsWatermark:
    """`AppliedPosition` for Kafka-fed projections in PostgreSQL (see the module doc)."""

    def __init__(self, store: ReadModelStore, recorder: Any, head: Callable[[], int]) -> None:
        self.store = store
        self.events = f"{recorder.datastore.schema or 'public'}.{recorder.events_table_name}"
        self.head = head
        self.verified: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()

    def __call__(self, names: Sequence[str]) -> int:
        upto = self.head()
        return min((self._applied(name, upto) for name in names), default=upto)

    def _applied(self, name: str, upto: int) -> int:
        generation = self.store.live_generation(name)
        if generation is None:
            return 0
        key = (name, generation)
        with self.lock:
            after = self.verified.get(key, 0)
        if after >= upto:
            return after
        tables = {"e": self.events, "a": f"{name}_v{generation}._applied"}
        rows = self.store.fetch(_FIRST_MISSING, tables, {"after": after, "upto": upto})
        missing = rows[0]["missing"] if rows else None
        reached = upto if missing is None else int(missing) - 1
        with self.lock:
            self.verified[key] = max(self.verified.get(key, 0), reached)
            return self.verified[key]
