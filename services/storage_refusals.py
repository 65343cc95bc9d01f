"""Whether this API's requests were lately refused for lack of storage: `/readyz`'s `writes`.

The event store's `SELECT 1` answers while the disk under it is full, so `/readyz` said
`event_store: ok` while every command answered 503 `storage-full` (red team: for ~55 s of
a 60 s full window, embedded; throughout on PostgreSQL). Every such answer is noted
(`errors.problem_response`) in the API's `Services.storage_refusals`, which the
composition root hands the readiness checks too, and the `writes` check says so until
this process commits a command again (its head position, `waiting.Positions`, moves past where it
was at the last refusal), or for `WINDOW_S` after the last refusal when no command
comes: as long as those clients were told to wait (`Retry-After`); a store nobody
writes to cannot be seen to be full or free again.
Degraded, not 503: reads still work, and every replica shares the one full store, so
taking them all out of rotation would refuse the reads too.
I/O: none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

WINDOW_S = 30.0
"""How long after the last refusal the check reports it: `errors.STORAGE_RETRY_AFTER`."""


class Head(Protocol):
    """Where the event store's head is, as far as this process has committed."""

    @property
    def head(self) -> int: ...


class StorageRefusals:
    """The storage-full answers of one event store's API: how many, since when."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._first = self._last = 0.0
        self._count = 0
        self._commits: Head | None = None
        self._head = 0  # the head committed when last refused

    def refused(self, commits: Head) -> None:
        """A request was answered 503 `storage-full`; `commits`: this process's head."""
        now = self._clock()
        with self._lock:
            if not self._recent(now):
                self._first, self._count = now, 0
            self._last, self._commits, self._head = now, commits, commits.head
            self._count += 1

    def check(self) -> str | None:
        """None unless a request was refused for lack of storage within `WINDOW_S`."""
        now = self._clock()
        with self._lock:
            if not self._recent(now):
                return None
            count, first, last = self._count, now - self._first, now - self._last
        return (
            f"storage full: {count} requests refused (503 storage-full) in the last"
            f" {first:.0f} s, the latest {last:.0f} s ago; writes fail until space is freed"
        )

    def _recent(self, now: float) -> bool:
        """A refusal within `WINDOW_S`, and no command committed since."""
        if self._count and self._commits is not None and self._commits.head > self._head:
            self._count = 0
        return self._count > 0 and now - self._last <= WINDOW_S
