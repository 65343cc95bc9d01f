"""What a process keeps of aggregates between requests, bounded in number and in bytes.

Entries are kept least recently used first. Each comes with the bytes it holds by its
own estimate (`Aggregate.held_bytes`), so a few long conversations cannot take what a
count alone would allow thousands of: putting an entry past either bound drops the least
recently used ones, and an entry larger than the whole byte bound is not kept at all.
Not thread-safe: its owner serialises access (a lock, the event loop, one thread).

Readers that come and go by the dozen (the event streams: `services.states_as_of`) each
keep their own, and a bound each would let their number decide what the process holds:
they share one `Budget` instead, the bytes of all of them together. A `SharedHeld` is
one reader's share: past the budget, what goes first is the oldest entries of the reader
that kept anything least recently (an idle stream's, before those of streams at work),
to be read again from the store should its reader need them. Thread-safe (its readers
run on worker threads): one lock per budget.
I/O: none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Held(Generic[K, V]):
    def __init__(self, max_size: int, max_bytes: int) -> None:
        self._max_size = max_size
        self._max_bytes = max_bytes
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._held = 0

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def touch(self, key: K) -> None:
        """Make `key` the most recently used."""
        self._entries.move_to_end(key)

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._held -= entry[1]
        return entry[0]

    def put(self, key: K, value: V, held: int) -> None:
        """Keep `value` (holding `held` bytes) as the most recently used, in place of any
        entry of `key`; then drop the least recently used while past a bound."""
        entries = self._entries
        replaced = entries.pop(key, None)
        if replaced is not None:
            self._held -= replaced[1]
        if held > self._max_bytes or self._max_size <= 0:
            return
        entries[key] = (value, held)
        self._held += held
        while len(entries) > self._max_size or self._held > self._max_bytes:
            self._held -= entries.popitem(last=False)[1][1]

    def values(self) -> Iterator[V]:
        """The values, the least recently used first."""
        return (value for value, _ in self._entries.values())

    def oldest(self) -> V | None:
        """The least recently used value, if any."""
        for value, _ in self._entries.values():  # the first (a command asks each time)
            return value
        return None

    def drop_oldest(self) -> None:
        self._held -= self._entries.popitem(last=False)[1][1]

    def clear(self) -> None:
        self._entries.clear()
        self._held = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held(self) -> int:
        """The bytes the entries hold, by their estimate."""
        return self._held


class Budget:
    """The most a process's `SharedHeld`s hold together, in bytes by their estimate."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._members: OrderedDict[int, Held[Any, Any]] = OrderedDict()  # least recent first
        self._held = 0

    def share(self, max_size: int) -> SharedHeld[Any, Any]:
        """A new reader's share: at most `max_size` entries, and the budget's bytes."""
        return SharedHeld(self, max_size)

    @property
    def held(self) -> int:
        """The bytes all shares hold, by their estimate."""
        return self._held

    def _changed(self, member: Held[Any, Any], before: int) -> None:
        """`member` (held `before` bytes) changed under the lock: count it, then drop the
        oldest entries of the least recently used shares while past the budget."""
        self._held += member.held - before
        self._members[id(member)] = member
        self._members.move_to_end(id(member))
        for other in self._members.values():
            while self._held > self.max_bytes and len(other):
                held = other.held
                other.drop_oldest()
                self._held -= held - other.held
            if self._held <= self.max_bytes:
                return

    def _left(self, member: Held[Any, Any]) -> None:
        if self._members.pop(id(member), None) is not None:
            self._held -= member.held
            member.clear()


class SharedHeld(Generic[K, V]):
    """One reader's `Held`, its bytes counted in a `Budget` (see the module docstring);
    `close` gives them back."""

    def __init__(self, budget: Budget, max_size: int) -> None:
        self._budget = budget
        self._held: Held[K, V] = Held(max_size, budget.max_bytes)

    def get(self, key: K) -> V | None:
        with self._budget._lock:
            return self._held.get(key)

    def pop(self, key: K) -> V | None:
        budget = self._budget
        with budget._lock:
            before = self._held.held
            value = self._held.pop(key)
            budget._changed(self._held, before)
            return value

    def put(self, key: K, value: V, held: int) -> None:
        budget = self._budget
        with budget._lock:
            before = self._held.held
            self._held.put(key, value, held)
            budget._changed(self._held, before)

    def values(self) -> list[V]:
        """The values, the least recently used first."""
        with self._budget._lock:
            return list(self._held.values())

    def close(self) -> None:
        with self._budget._lock:
            self._budget._left(self._held)

    @property
    def held(self) -> int:
        return self._held.held
