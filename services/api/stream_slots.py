"""How many event streams each principal holds open in this process, at most a few.

An open stream costs the process a poll of the event store every half second (two thread
hops, and a query on PostgreSQL) for as long as its client keeps the connection: one
principal holding 1,500 of them kept the API busier than one core. A principal holding
`per_principal` streams gets a 429 for the next one (`TooManyStreams`, with
`Retry-After`) until one of them ends. A stream's slot is given back when it ends for
any reason (the client went away, the token was revoked, the process stops) and, should
the stream never have started, when it is collected.
I/O: none.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from services.api.errors import TooManyStreams

S = TypeVar("S", bound=AsyncIterator[Any])


class StreamSlots:
    def __init__(self, per_principal: int) -> None:
        self.per_principal = per_principal
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()  # collection may give a slot back on any thread

    def open(self, principal: str, stream: Callable[[Callable[[], None]], S]) -> S:
        """`stream(release)` in one of `principal`'s slots, or `TooManyStreams`. The stream
        calls `release` when it ends; collection calls it too, should it never start."""
        with self._lock:
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
