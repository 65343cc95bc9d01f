"""How many event streams each principal, and all of them together, hold open in this
process: at most a few each, and at most `per_process` in all.

An open stream costs the process a poll of the event store every half second (two thread
hops, and a query on PostgreSQL) for as long as its client keeps the connection: one
principal holding 1,500 of them kept the API busier than one core. It also holds a
page of events (`PAGE_BYTES`) and the aggregates it judges them by: those of all streams
together within `states` (`CRM_STREAMS_CACHE_MB`), a bound of the process rather than of
each stream, which let 64 replays keep 32 MiB each.
A principal holding `per_principal` streams gets a 429 for the next one
(`TooManyStreams`, with `Retry-After`) until one of them ends; once the process holds
`per_process`, every principal gets a 503 (`StreamsFull`, with `Retry-After`): the
limit per principal alone let the number of principals decide what the process took
on. A stream's slot is given back when it ends for any reason (the client went away,
the token was revoked, the process stops) and, should the stream never have started,
when it is collected.
I/O: none.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from services.api.http_errors import StreamsFull, TooManyStreams
from services.held import Budget

S = TypeVar("S", bound=AsyncIterator[Any])


class StreamSlots:
    def __init__(self, per_principal: int, per_process: int, states_bytes: int = 2**27) -> None:
        self.per_principal, self.per_process = per_principal, per_process
        self.states = Budget(states_bytes)  # what the streams' `AggregatesAsOf` share
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()  # collection may give a slot back on any thread

    def open(self, principal: str, stream: Callable[[Callable[[], None]], S]) -> S:
        """`stream(release)` in one of `principal`'s slots, or `TooManyStreams` (or
        `StreamsFull`). The stream calls `release` when it ends; collection calls it too,
        should it never start."""
        with self._lock:
            if self._open.total() >= self.per_process:
                raise StreamsFull(
                    f"this server holds {self.per_process} event streams open already; retry later"
                )
            if self._open[principal] >= self.per_principal:
                raise TooManyStreams(
                    f"{principal} holds {self.per_principal} event streams open already;"
                    " close one first"
                )
            self._open[principal] += 1
        given_back = False

        def release() -> None:
            nonlocal given_back
            with self._lock:
                if given_back:
                    return
                given_back = True
                self._open[principal] -= 1
                if not self._open[principal]:
                    del self._open[principal]

        opened = stream(release)
        weakref.finalize(opened, release)
        return opened

    def held(self, principal: str) -> int:
        with self._lock:
            return self._open[principal]
