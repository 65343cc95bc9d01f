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
state it started from (`services.command_races.CONTENDED_SECONDS`).
Two commands on one aggregate at once: the second misses and loads from the store;
the unique (id, version) key lets only one of them commit.

Several API processes: another process may have written since we cached. The cache
does not fast-forward by itself, to save a query per command; the command service does,
for an aggregate idle past `IDLE_SECONDS` (below) and, for a while after it lost a race,
for every one (`services.command_races.CONTENDED_SECONDS`). Either way it
is safe because the command service trusts a cached aggregate only for a decision that
then commits: a stale decision's events collide with the newer ones on (id, version)
and the command is decided again on a fresh load; a refusal, a version mismatch or a
no-op decided on cached state is likewise decided again on a fresh load before it is
answered. Reads (GET, history, as-of) never use this cache. Erasure clears it.

How long, and how much. A command finds its aggregate as it was left here:
* used within `IDLE_SECONDS` of its last command, as is: what the cache serves is a
  burst of commands on one aggregate (a conversation's messages, an agent's edits),
  which one process serves alone more often than not;
* used later, up to `KEPT_SECONDS`, it is `recent=False`: the command service first
  catches it up with the events stored after it (one small query, like a contended
  command's), as another process may have written meanwhile. Without that a
  conversation touched every minute was rebuilt from its snapshot and history at every
  command (~11 ms of the loop for one of 2,400 events, against ~0.6 ms to catch up).
What the cached aggregates hold is bounded too: at most `HELD_BYTES` by their own
estimate (`Aggregate.held_bytes`, sealed), the least recently used going first, so a
client touching many long conversations cannot grow the process without bound; an
aggregate larger than the whole bound is not kept. Expired ones are dropped as commands
come and, in a process that goes quiet, by `sweep`, which the API runs every second
(`services.api.app`). CPython does not clear the memory a dropped object held; what
this bounds is what the process keeps reachable.
I/O: none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple
from uuid import UUID

from domain.base import Aggregate
from services.held import Held

IDLE_SECONDS = 5.0
"""How long after its last command a cached aggregate is trusted as is (see above)."""
KEPT_SECONDS = 300.0
"""How long after its last command a cached aggregate is kept at all (see above)."""
HELD_BYTES = 128 * 2**20
"""The most the cached aggregates may hold, by their own estimate (see above); the API
sets it from `CRM_CACHE_MB`."""


class Lent(NamedTuple):
    aggregate: Aggregate
    recent: bool
    """Used within `IDLE_SECONDS`: trusted as is; else caught up before a decision."""


class _Entry(NamedTuple):
    aggregate: Aggregate
    used: float  # the clock's time of its last command


class AggregateCache:
    def __init__(
        self,
        max_size: int = 10_000,
        idle_seconds: float = IDLE_SECONDS,
        kept_seconds: float = KEPT_SECONDS,
        max_bytes: int = HELD_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_seconds = idle_seconds
        self._kept_seconds = kept_seconds
        self._clock = clock
        # keyed by `UUID.int`: hashing a `UUID` is a Python call (two with its `hash`),
        # and the `OrderedDict` hashes its keys again as it is walked and reordered
        self._lent: Held[int, _Entry] = Held(max_size, max_bytes)
        self._lock = threading.Lock()

    def take(self, aggregate_id: UUID) -> Lent | None:
        """The cached aggregate, now owned by the caller (removed from the cache)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._lent.pop(aggregate_id.int)
        if entry is None:
            return None
        return Lent(entry.aggregate, recent=now - entry.used <= self._idle_seconds)

    def give_back(self, aggregate: Aggregate) -> None:
        """Cache `aggregate`, whose events are all durable, unless a newer one is cached."""
        if aggregate._pending:
            return
        held, key = aggregate.held_bytes(), aggregate.id.int
        with self._lock:
            cached = self._lent.get(key)
            if cached is None or cached.aggregate.version < aggregate.version:
                self._lent.put(key, _Entry(aggregate, self._clock()), held)

    def sweep(self) -> None:
        """Drop the aggregates idle for longer than `kept_seconds`."""
        with self._lock:
            self._expire(self._clock())

    def clear(self) -> None:
        with self._lock:
            self._lent.clear()

    def __len__(self) -> int:
        return len(self._lent)

    @property
    def held(self) -> int:
        """The bytes the cached aggregates hold, by their estimate."""
        return self._lent.held

    def _expire(self, now: float) -> None:
        """Drop expired aggregates: the oldest are first, so this stops at the first kept."""
        oldest = now - self._kept_seconds
        while (first := self._lent.oldest()) is not None and first.used < oldest:
            self._lent.drop_oldest()
