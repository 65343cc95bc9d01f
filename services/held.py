"""What a process keeps of aggregates between requests, bounded in number and in bytes.

Entries are kept least recently used first. Each comes with the bytes it holds by its
own estimate (`Aggregate.held_bytes`), so a few long conversations cannot take what a
count alone would allow thousands of: putting an entry past either bound drops the least
recently used ones, and an entry larger than the whole byte bound is not kept at all.
Not thread-safe: its owner serialises access (a lock, the event loop, one thread).
I/O: none.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

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
