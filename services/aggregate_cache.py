"""Aggregates as this process last committed them, lent to one command at a time.

Loading an aggregate costs a query plus decoding its whole history (~0.5 ms and
growing with history); a command that finds its aggregate here skips all of that.
Aggregates are kept sealed, as loaded (`services.commands` opens for a decision only
what it compares, and seals it again before giving the aggregate back).
The cache never copies: `take` removes the aggregate, so the command owns it and may
mutate it freely; only after its events are durable does the command
`give_back` the aggregate, which then is exactly the committed state. A command that
fails (domain error, conflict, crash) gives nothing back, so the next one loads fresh;
only a contended command that lost a race gives back its spare copy of the committed
state it started from (`services.commands.CONTENDED_SECONDS`).
Two commands on one aggregate at once: the second misses and loads from the store;
the unique (id, version) key lets only one of them commit.

Several API processes: another process may have written since we cached. The cache
does not fast-forward by itself, to save a query per command; the command service does,
for a while after it lost a race (`services.commands.CONTENDED_SECONDS`). Either way it
is safe because the command service trusts a cached aggregate only for a decision that
then commits: a stale decision's events collide with the newer ones on (id, version)
and the command is decided again on a fresh load; a refusal, a version mismatch or a
no-op decided on cached state is likewise decided again on a fresh load before it is
answered. Reads (GET, history, as-of) never use this cache. Erasure clears it.

None is kept longer than `IDLE_SECONDS` after its last command: what the cache serves
is a burst of commands on one aggregate (a conversation's messages, an agent's edits),
not a second copy of the store. Expired ones are dropped as commands come and, in a
process that goes quiet, by `sweep`, which the API runs every second
(`services.api.app`). CPython does not clear the memory a dropped object held; what
this bounds is what the process keeps reachable.
I/O: none.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from uuid import UUID

from domain.base import Aggregate

IDLE_SECONDS = 5.0
"""How long a cached aggregate outlives its last command (see above)."""


class AggregateCache:
    def __init__(
        self,
        max_size: int = 10_000,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_size = max_size
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._lent: OrderedDict[UUID, tuple[Aggregate, float]] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def take(self, aggregate_id: UUID) -> Aggregate | None:
        """The cached aggregate, now owned by the caller (removed from the cache)."""
        with self._lock:
            self._expire()
            entry = self._lent.pop(aggregate_id, None)
        return None if entry is None else entry[0]

    def give_back(self, aggregate: Aggregate) -> None:
        """Cache `aggregate`, whose events are all durable, unless a newer one is cached."""
        if aggregate._pending or self._max_size <= 0:
            return
        with self._lock:
            cached = self._lent.get(aggregate.id)
            if cached is not None and cached[0].version >= aggregate.version:
                return
            self._lent[aggregate.id] = (aggregate, self._clock())
            self._lent.move_to_end(aggregate.id)
            if len(self._lent) > self._max_size:
                self._lent.popitem(last=False)

    def sweep(self) -> None:
        """Drop the aggregates idle for longer than `idle_seconds`."""
        with self._lock:
            self._expire()

    def clear(self) -> None:
        with self._lock:
            self._lent.clear()

    def __len__(self) -> int:
        return len(self._lent)

    def _expire(self) -> None:
        """Drop idle aggregates: the oldest are first, so this stops at the first kept."""
        oldest = self._clock() - self._idle_seconds
        lent = self._lent
        while lent and next(iter(lent.values()))[1] < oldest:
            lent.popitem(last=False)
